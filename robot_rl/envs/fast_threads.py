"""The compiled batch step split over threads (``make_vec(..., num_threads=k)``): nogil worker loops that spin on a
generation counter for a short while and then sleep in a Linux futex wait, and the calling thread's part.

A step of 8 cart-poles costs ~50 us of kernel time, less than waking a thread blocked on a semaphore or condition
variable on a small VM, so the workers spin (with the CPU's pause hint) for ``batched_threads.THREAD_SPIN_S``
before they sleep (bench/results/envs.md compares this with plain ``threading`` workers: 1.97x vs 1.10x of 16 single
envs). Used by :func:`robot_rl.envs.fast_step.kernel` (``batch=True``) and ``robot_rl.envs.batched``.
"""

from __future__ import annotations

# Slots of a worker's row in the threaded batch's control array (int64 [W, CTL_WIDTH], one 128-byte row per worker
# so that the two sides' spinning reads do not share a cache line).
CTL_GEN, CTL_DONE, CTL_NDONE, CTL_SLEEP, CTL_STOP, CTL_COL, CTL_LAT, CTL_TS, CTL_SPIN_NS = 0, 1, 2, 3, 4, 5, 6, 8, 10
CTL_SLEEPS, CTL_WAIT_NS, CTL_MAIN_TS, CTL_WORK_NS = 11, 12, 13, 15  # statistics: steps that had to wake the worker,
# the caller's waits and the worker's stepping [ns]
CTL_WIDTH = 16
DONE_FAILED = -1  # CTL_DONE when the worker thread died (its Python wrapper writes it)
_SYS_FUTEX = {"x86_64": 202, "aarch64": 98}


def threads_unavailable_reason() -> str | None:
    """Why the threaded batch step cannot run on this platform (None when it can): it sleeps and wakes its worker
    threads with Linux futexes.
    """
    import platform

    if platform.system() != "Linux" or platform.machine() not in _SYS_FUTEX:
        return f"the threaded batch step needs Linux on x86_64 or aarch64 (futexes), not {platform.system()} " \
               f"{platform.machine()}"
    return None


def _sync_primitives():
    """Numba-callable atomics on raw addresses (``load(addr)``, ``store(addr, value)``: sequentially consistent
    int64), ``now_ns(timespec address)`` (CLOCK_MONOTONIC), ``sleep_on(addr, value)`` (a futex wait of at most
    0.1 s while the int64 at ``addr`` still has ``value`` in its low 32 bits), ``wake(addr)`` and ``pause()``
    (``sched_yield``).
    """
    import ctypes
    import ctypes.util
    import platform

    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    i64p = types.CPointer(types.int64)

    @intrinsic
    def load(typingctx, addr):  # pragma: no cover - compile-time
        def codegen(context, builder, signature, args):
            ptr = builder.inttoptr(args[0], context.get_value_type(i64p))
            return builder.load_atomic(ptr, "seq_cst", 8)

        return types.int64(types.int64), codegen

    @intrinsic
    def store(typingctx, addr, value):  # pragma: no cover - compile-time
        def codegen(context, builder, signature, args):
            ptr = builder.inttoptr(args[0], context.get_value_type(i64p))
            builder.store_atomic(args[1], ptr, "seq_cst", 8)
            return context.get_dummy_value()

        return types.void(types.int64, types.int64), codegen

    @intrinsic
    def relax(typingctx):  # pragma: no cover - compile-time
        # The spin-wait hint (x86 PAUSE, ARM YIELD): a spinning thread leaves the core's resources to its
        # hyperthread sibling (the other vCPU of a small VM may be one).
        def codegen(context, builder, signature, args):
            if platform.machine() == "x86_64":
                fn = builder.module.declare_intrinsic("llvm.x86.sse2.pause", fnty=ir.FunctionType(ir.VoidType(), []))
                builder.call(fn, [])
            else:
                fn = builder.module.declare_intrinsic("llvm.aarch64.hint",
                                                      fnty=ir.FunctionType(ir.VoidType(), [ir.IntType(32)]))
                builder.call(fn, [ir.Constant(ir.IntType(32), 1)])
            return context.get_dummy_value()

        return types.void(), codegen

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=False)
    syscall = libc.syscall
    syscall.argtypes, syscall.restype = [ctypes.c_long] * 6, ctypes.c_long
    clock = libc.clock_gettime
    clock.argtypes, clock.restype = [ctypes.c_int, ctypes.c_int64], ctypes.c_int
    yield_ = libc.sched_yield
    yield_.argtypes, yield_.restype = [], ctypes.c_int
    futex = _SYS_FUTEX[platform.machine()]
    wait_private, wake_private = 0 | 128, 1 | 128  # FUTEX_WAIT / FUTEX_WAKE with FUTEX_PRIVATE_FLAG
    import numba

    @numba.njit(nogil=True, cache=False)
    def now_ns(ts):  # pragma: no cover - runs compiled
        clock(1, ts)  # CLOCK_MONOTONIC into the timespec at address ts
        return load(ts) * 1_000_000_000 + load(ts + 8)

    @numba.njit(nogil=True, cache=False)
    def sleep_on(addr, value, ts):  # pragma: no cover - runs compiled
        store(ts, 0)
        store(ts + 8, 100_000_000)  # at most 0.1 s (the caller loops)
        syscall(futex, addr, wait_private, value & 0xFFFFFFFF, ts, 0)

    @numba.njit(nogil=True, cache=False)
    def wake(addr):  # pragma: no cover - runs compiled
        syscall(futex, addr, wake_private, 1, 0, 0)

    @numba.njit(nogil=True, cache=False)
    def pause():  # pragma: no cover - runs compiled
        yield_()

    return load, store, now_ns, sleep_on, wake, pause, relax


def compile_threaded(njit, batch_range):
    """The batch step split over threads: ``step_mt`` (the calling thread's part, publishing the others' parts and
    waiting for them), ``worker`` (the loop a worker thread runs, nogil, until told to stop) and ``stop``; (None,
    None, None) where :func:`threads_unavailable_reason` says no.

    Protocol per worker row ``w`` of ``ctl`` (slots ``CTL_*``): the caller copies the actions (and goals) of the
    worker's envs into the persistent float64 buffers ``abuf`` / ``gbuf``, writes the chunk column and the latency
    switch, then stores a new generation in GEN (a sequentially consistent store: everything written before it is
    visible to the worker once it sees the generation) and, if the worker said it sleeps (SLEEP), wakes it with a
    futex. The worker spins on GEN for up to SPIN_NS, then sets SLEEP, looks at GEN once more and sleeps in a futex
    wait on GEN (the store-then-load on both sides means one of them always sees the other: no lost wake-up). It
    steps its envs ``bounds[w + 1] .. bounds[w + 2] - 1`` into the persistent shadow outputs ``sh_*``, stores the
    number of ended episodes in NDONE, then the generation in DONE. The caller steps envs ``0 .. bounds[1] - 1``
    into the fresh outputs, waits for every DONE (spinning, yielding the core after a while) and copies the
    workers' rows over. The per-env state arrays (step counters, returns, noise positions, latency registers,
    warning baselines) are shared: each thread writes only its own envs' rows.

    One function on purpose: the three kernels close over ``batch_range`` and the synchronization primitives, which
    numba freezes into them as compile-time constants, and they implement the two sides of one protocol.
    """
    if threads_unavailable_reason() is not None:
        return None, None, None
    import numpy as np

    load, store, now_ns, sleep_on, wake, pause, relax = _sync_primitives()

    @njit
    def step_mt(a, act_on, act_noise, off_a, lat_on, lat_buf, lat, ptrs, lay, half, noise, off_s, c, sense, goals,
                rp, t, max_steps, returns, lengths, obs, rew, term, trunc, err, succ, final, ep_r, ep_l, done, done2,
                last_warn, abuf, gbuf, sh, ctl, bounds):  # pragma: no cover - runs compiled
        # sh: the workers' outputs (sh_obs, sh_rew, sh_term, sh_trunc, sh_err, sh_succ, sh_final, sh_ep_r, sh_ep_l,
        # sh_done). Returns the number of ended episodes, or DONE_FAILED when a worker died.
        sh_obs, sh_rew, sh_term, sh_trunc, sh_err, sh_succ, sh_final, sh_ep_r, sh_ep_l, sh_done = sh
        n_env, nu = a.shape
        for e in range(bounds[1], n_env):
            for i in range(nu):
                abuf[e, i] = np.float64(a[e, i])
            for i in range(goals.shape[1]):
                gbuf[e, i] = goals[e, i]
        base = ctl.ctypes.data
        row = ctl.shape[1] * 8
        for w in range(ctl.shape[0]):
            ctl[w, CTL_COL] = c
            ctl[w, CTL_LAT] = lat_on
            at = base + w * row
            store(at + 8 * CTL_GEN, ctl[w, CTL_GEN] + 1)
            if load(at + 8 * CTL_SLEEP):
                wake(at + 8 * CTL_GEN)
        n_done = batch_range(0, bounds[1], a, act_on, act_noise, off_a, lat_on, lat_buf, lat, ptrs, lay, half, noise,
                             off_s, c, sense, goals, rp, t, max_steps, returns, lengths, obs, rew, term, trunc, err,
                             succ, final, ep_r, ep_l, done, done2, last_warn)
        for w in range(ctl.shape[0]):
            at = base + w * row
            g = ctl[w, CTL_GEN]
            t0 = now_ns(at + 8 * CTL_MAIN_TS)
            spins = 0
            while True:
                d = load(at + 8 * CTL_DONE)
                if d == g:
                    break
                if d == DONE_FAILED:
                    return DONE_FAILED
                spins += 1
                relax()
                if spins > 20000:  # the worker is late (asleep, or not scheduled): let it have this core
                    pause()
            ctl[w, CTL_WAIT_NS] += now_ns(at + 8 * CTL_MAIN_TS) - t0
            for e in range(bounds[w + 1], bounds[w + 2]):
                for j in range(obs.shape[1]):
                    obs[e, j] = sh_obs[e, j]
                    final[e, j] = sh_final[e, j]
                rew[e], term[e], trunc[e], err[e], succ[e] = sh_rew[e], sh_term[e], sh_trunc[e], sh_err[e], sh_succ[e]
                ep_r[e], ep_l[e], done[e], done2[e] = sh_ep_r[e], sh_ep_l[e], sh_done[e], sh_done[e]
            n_done += ctl[w, CTL_NDONE]
        return n_done

    @njit
    def worker(w, act_on, act_noise, off_a, lat_buf, lat, ptrs, lay, half, noise, off_s, sense, rp, t, max_steps,
               returns, lengths, last_warn, abuf, gbuf, sh, ctl, bounds):  # pragma: no cover - runs compiled
        sh_obs, sh_rew, sh_term, sh_trunc, sh_err, sh_succ, sh_final, sh_ep_r, sh_ep_l, sh_done = sh
        at = ctl.ctypes.data + w * ctl.shape[1] * 8
        gen, ts = at + 8 * CTL_GEN, at + 8 * CTL_TS
        seen = ctl[w, CTL_GEN]
        lo, hi = bounds[w + 1], bounds[w + 2]
        if load(at + 8 * CTL_STOP):  # (a warm-up call: compiles and returns)
            return
        while True:
            start = now_ns(ts)
            spins = 0
            idle = False  # True after a sleep that timed out: sleep again without spinning first
            while True:
                g = load(gen)
                if g != seen:
                    break
                spins += 1
                relax()
                if spins % 256 == 0 and (idle or now_ns(ts) - start > ctl[w, CTL_SPIN_NS]):
                    store(at + 8 * CTL_SLEEP, 1)
                    if load(gen) == seen:
                        sleep_on(gen, seen, ts)
                    store(at + 8 * CTL_SLEEP, 0)
                    idle = load(gen) == seen
                    if not idle:
                        ctl[w, CTL_SLEEPS] += 1  # a step had to wake this worker
            seen = g
            if load(at + 8 * CTL_STOP):
                return
            t0 = now_ns(ts)
            n = batch_range(lo, hi, abuf, act_on, act_noise, off_a, ctl[w, CTL_LAT] != 0, lat_buf, lat, ptrs, lay,
                            half, noise, off_s, ctl[w, CTL_COL], sense, gbuf, rp, t, max_steps, returns, lengths,
                            sh_obs, sh_rew, sh_term, sh_trunc, sh_err, sh_succ, sh_final, sh_ep_r, sh_ep_l, sh_done,
                            sh_done, last_warn)
            ctl[w, CTL_NDONE] = n
            ctl[w, CTL_WORK_NS] += now_ns(ts) - t0
            store(at + 8 * CTL_DONE, g)

    @njit
    def stop(ctl):  # pragma: no cover - runs compiled
        # Tell every worker of ctl to return (and wake it).
        base = ctl.ctypes.data
        for w in range(ctl.shape[0]):
            at = base + w * ctl.shape[1] * 8
            store(at + 8 * CTL_STOP, 1)
            store(at + 8 * CTL_GEN, ctl[w, CTL_GEN] + 1)
            wake(at + 8 * CTL_GEN)

    return step_mt, worker, stop
