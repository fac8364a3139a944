#!/usr/bin/env bash
# Reproduce the shipped models in models/ (recipes in models/README.md) from the configs in config/.
#   scripts/make_models.sh                      # every shipped model
#   scripts/make_models.sh arm_reach_gciql      # one (arm_reach_gciql | cartpole_pets_dynamics | cartpole_swingup_sac
#                                               #      | go2_joystick_ppo | panda_reach_gciql | panda_reach_sac)
# Datasets go to data/ and training runs to runs/ (both git-ignored); each step starts from a clean directory.
# Everything is seeded and runs on CPU with one torch thread; re-running gives the same configs (same config hash in
# the sidecars) and, up to floating-point nondeterminism of the platform, the same numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python; fi
RR="$PY -m robot_rl.cli"

arm_reach_gciql() {
    # goal-conditioned IQL on noisy-expert reach data: ~20 s collect + ~4 min train + export on 2 shared cores
    rm -rf data/arm_reach_ship runs/arm_reach_gciql_ship
    $RR collect --config config/collect_arm_reach_ship.yaml --no-progress
    $RR train --config config/gciql_arm_reach_ship.yaml --run-dir runs/arm_reach_gciql_ship
    $RR export runs/arm_reach_gciql_ship --out models/arm_reach_gciql
}

cartpole_pets_dynamics() {
    # the PETS loop (1 random + 8 CEM-MPC episodes), then export of the final ensemble: ~6-8 min
    $PY scripts/train_pets_dynamics.py --config config/pets_cartpole_swingup.yaml --out models/cartpole_pets_dynamics
}

cartpole_swingup_sac() {
    rm -rf runs/cartpole_swingup_sac_ship
    $RR train --config config/sac_cartpole_swingup.yaml --run-dir runs/cartpole_swingup_sac_ship
    $RR export runs/cartpole_swingup_sac_ship --out models/cartpole_swingup_sac
    $RR monitor models/cartpole_swingup_sac --episodes 120 --margin 1.3  # its dynamics monitor (policy_node monitor:=...), ~1 min
}

go2_joystick_ppo() {
    # PPO on 1024 Go2 envs (MuJoCo rollout threads), 7M steps: ~14 min on 2 cores; then the tracking report
    rm -rf runs/go2_joystick_ship
    $RR train --config config/ppo_go2_joystick.yaml --run-dir runs/go2_joystick_ship
    $RR export runs/go2_joystick_ship --out models/go2_joystick_ppo
    $RR evaluate runs/go2_joystick_ship --tracking --episodes 20
}

panda_reach_gciql() {
    # goal-conditioned IQL offline on 1000 noisy-expert Panda episodes: ~3 min collect + ~10 min train (one core,
    # shared), export of best.pt, then 100 held-out goals under reality samples (success held the last 0.5 s)
    rm -rf data/panda_reach_noisy runs/panda_reach_gciql_ship
    $RR collect --config config/collect_panda_reach_noisy.yaml --no-progress
    $RR train --config config/gciql_panda_reach.yaml --run-dir runs/panda_reach_gciql_ship
    $RR export runs/panda_reach_gciql_ship --out models/panda_reach_gciql
    $RR evaluate runs/panda_reach_gciql_ship --episodes 100 --randomization reality
}

panda_reach_sac() {
    # SAC with hindsight relabeling on the Panda reach (delta joint targets), one core: ~30 min; then 100 held-out
    # goals under reality samples (success held the last 0.5 s)
    rm -rf runs/panda_reach_sac_ship
    $RR train --config config/sac_panda_reach.yaml --run-dir runs/panda_reach_sac_ship
    $RR export runs/panda_reach_sac_ship --out models/panda_reach_sac
    $RR evaluate runs/panda_reach_sac_ship --episodes 100 --randomization reality
}

shipped() {
    sed -n 's|^### models/\([A-Za-z0-9_]*\)[[:space:]]*$|\1|p' models/README.md
}

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then mapfile -t targets < <(shipped); fi
for t in "${targets[@]}"; do
    case "$t" in
        arm_reach_gciql|cartpole_pets_dynamics|cartpole_swingup_sac|go2_joystick_ppo|panda_reach_gciql|panda_reach_sac)
            echo "== models/$t"; "$t" ;;
        *) echo "make_models.sh: unknown model '$t' (known: arm_reach_gciql cartpole_pets_dynamics" \
                "cartpole_swingup_sac go2_joystick_ppo panda_reach_gciql panda_reach_sac)" >&2; exit 2 ;;
    esac
done
