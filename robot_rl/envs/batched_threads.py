"""Worker threads of a ``BatchedBlock`` (``robot_rl.envs.batched``): the compiled batch step split over k threads.

With ``num_threads > 1`` (``make_vec(..., num_threads=k)``) the compiled batch step runs on k threads: the calling
thread steps the first contiguous part of the batch, k - 1 worker threads the others, each in a nogil compiled loop
(``fast_threads.compile_threaded``: sequentially consistent atomics announce a step and its completion, a worker spins
for ``THREAD_SPIN_S`` and then sleeps in a futex wait that the caller wakes; the spin loops use the CPU's pause hint,
so that a spinning thread slows a hyperthread sibling less). The random draws and autoresets stay in the calling
thread, before and after the kernel, so the results are those of one thread, bit for bit. The worker threads stop on
``close()``, when the block is garbage-collected, and do not exist in a forked child (its block steps every env
itself). Kept apart from the block's stepping: thread start, warm-up, stop and the fork and GC hooks.
"""

from __future__ import annotations

import os
import threading
import weakref

import numpy as np

from robot_rl.envs import fast_step, fast_threads

THREAD_SPIN_S = 0.002
"""How long a batch worker thread busy-waits for the next step before it sleeps (a futex wake-up costs tens of
microseconds on a VM, a step of 8 cart-poles ~100 us): while the caller runs its policy between steps the worker
keeps a core busy for at most this long."""


class BatchThreadsMixin:
    """The thread half of ``BatchedBlock``: starts, warms up and stops its worker threads (the attributes it reads
    are the block's, set in ``BatchedBlock.__init__`` and ``_build_kernel``).
    """

    def _start_threads(self, num_threads: int) -> None:
        """Split the compiled batch step over ``num_threads`` threads (this one and ``num_threads - 1`` workers,
        ``fast_threads.compile_threaded``): contiguous blocks of envs, the first for the calling thread.
        """
        k = self._kernels if self._kernel is not None else None
        if k is None or k.step_mt is None:
            why = fast_threads.threads_unavailable_reason() if k is not None else (
                fast_step.unavailable_reason() or "the envs run the Python step (compiled_step=False, or the task has "
                "no compiled step and reward)")
            raise ValueError(f"num_threads={num_threads} needs the compiled batch step on threads: {why}")
        n, w = self.n, num_threads - 1
        self._bounds = np.linspace(0, n, num_threads + 1).round().astype(np.int64)
        m = self._n_obs
        z = np.zeros
        self._abuf = z((n, self._act_noise.shape[2]))
        self._gbuf = z((n, self._builder.goal_dim))
        self._sh = (z((n, m), np.float32), z(n), z(n, bool), z(n, bool), z(n, bool), z(n, bool), z((n, m), np.float32),
                    z(n), z(n, np.int64), z(n, bool))
        self._ctl = z((w, fast_threads.CTL_WIDTH), np.int64)
        self._ctl[:, fast_threads.CTL_SPIN_NS] = int(THREAD_SPIN_S * 1e9)
        # The persistent arrays the workers read and write (the block never rebinds them: updates are in place).
        self._worker_args = (self._on["noise"], self._act_noise, self._off_a, self._lat, self._latency, self._ptrs,
                             self._lay, self._half, self._noise, self._off_s, self._on["sense"], self._rp, self._t,
                             self._max_steps, self.returns, self.lengths, self._last_warn, self._abuf, self._gbuf,
                             self._sh, self._ctl, self._bounds)
        warm = self._ctl[:1].copy()
        warm[0, fast_threads.CTL_STOP] = 1
        k.worker(0, *self._worker_args[:-2], warm, self._bounds)  # compiles it, returns at once (STOP set)
        self._warm_up_mt()
        failures: list = []
        for i in range(w):
            th = threading.Thread(target=_run_worker, args=(k.worker, i, self._worker_args, failures),
                                  name=f"robot_rl-batch-{i + 1}", daemon=True)
            th.start()
            self._threads.append(th)
        self._failures = failures
        self.num_threads = num_threads
        _finalize(self, k.stop, self._ctl, self._threads)
        _THREADED.add(self)

    def _warm_up_mt(self) -> None:
        """Compile ``step_mt`` for this block's argument types (a call with no worker rows: env 0 only, undone)."""
        u0, k = self.u[0], self._kernels
        bounds, ctl = np.array([0, 1], np.int64), np.zeros((0, fast_threads.CTL_WIDTH), np.int64)
        z, nu, b = np.zeros, u0.model.nu, np.zeros(1, bool)

        def call():
            o = z((1, self._n_obs), np.float32)
            k.step_mt(z((1, nu), np.float32), b, self._act_noise[:1].copy(), self._off_a[:1], False,
                      self._lat[:1].copy(), self._latency[:1], self._ptrs[:1], self._lay, self._half,
                      self._noise[:1], self._off_s[:1], 0, b, self._gbuf[:1].copy(), self._rp, self._t[:1].copy(),
                      self._max_steps, z(1), z(1, np.int64), o, z(1), b, b, b, b, o, z(1), z(1, np.int64), b, b,
                      self._last_warn[:1].copy(), self._abuf[:1].copy(), self._gbuf[:1].copy(),
                      tuple(v[:1].copy() for v in self._sh), ctl, bounds)

        if not fast_step.warm_up(u0.model, u0.data, call, f"batched {u0.name}: the threaded batch step"):
            raise RuntimeError(f"the threaded batch step failed its warm-up: {fast_step.unavailable_reason()}")

    def _stop_threads(self) -> None:
        if self._threads:
            _stop(self._kernels.stop, self._ctl, self._threads)
            self._threads = []
            self.num_threads = 1


_THREADED: weakref.WeakSet = weakref.WeakSet()  # blocks with worker threads (a forked child has none of them)


def _forget_threads_in_child() -> None:
    for block in list(_THREADED):
        block._threads, block.num_threads = [], 1  # a fork copies only the forking thread: step in this one


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_threads_in_child)


def _run_worker(worker, w: int, args: tuple, failures: list) -> None:
    """A worker thread: the compiled worker loop (nogil) until stopped; a failure is reported to the stepping
    thread through the DONE slot.
    """
    try:
        worker(w, *args)
    except BaseException as exc:  # noqa: BLE001 - reported by the stepping thread
        failures.append(f"{type(exc).__name__}: {exc}")
        args[-2][w, fast_threads.CTL_DONE] = fast_threads.DONE_FAILED


def _stop(stop, ctl: np.ndarray, threads: list) -> None:
    stop(ctl)
    for th in threads:
        th.join(timeout=5)


def _finalize(block, stop, ctl, threads) -> None:
    """Stop the worker threads when the block is garbage-collected (they hold its arrays, not the block)."""
    weakref.finalize(block, _stop, stop, ctl, threads)
