#!/usr/bin/env bash
# HTCondor job script, the same for the docker, apptainer and pixi-pack flavours.
# Runs in the job's scratch directory; its arguments are passed on to torch_MNIST.py.
# Self-checkpointing: training saves checkpoint.pt every epoch and exits 85 every
# CHECKPOINT_MINUTES (default 60); this script exits 85 too, HTCondor (checkpoint_exit_code
# = 85) transfers checkpoint.pt back and restarts the job, which resumes. An evicted job
# restarts from the last checkpoint so transferred (HTCondor sends none on eviction).
set -euo pipefail

# Jobs run as a non-root UID, often with HOME unset or unwritable.
if [ -z "${HOME:-}" ] || [ ! -w "${HOME}" ]; then
    export HOME="${_CONDOR_SCRATCH_DIR:-$PWD}"
fi
echo "# job on $(hostname) as uid $(id -u), in ${PWD}, GPUs: ${CUDA_VISIBLE_DEVICES:-none}"

# Activate the environment: a container's activation script (never its entrypoint,
# whose exec would replace this script), or a pixi-pack executable unpacked here.
if [ -n "${PIXI_PACK_EXECUTABLE:-}" ]; then
    # activate.sh is written last: present, the environment was unpacked by a previous
    # run in this sandbox (a restart after exit 85).
    if [ ! -f activate.sh ]; then
        echo "# unpacking ${PIXI_PACK_EXECUTABLE}"
        # bash, not ./: file transfer may drop the executable bit.
        bash "./${PIXI_PACK_EXECUTABLE}"
    fi
    # pixi-unpack's activate.sh runs conda's activation scripts, which read unset variables.
    set +u
    # shellcheck source=/dev/null
    . ./activate.sh
    set -u
elif [ -f /app/activate.sh ]; then
    # shellcheck source=/dev/null
    . /app/activate.sh
else
    echo "error: no environment: neither /app/activate.sh (container) nor PIXI_PACK_EXECUTABLE is set." >&2
    exit 1
fi

echo "# GPU and PyTorch diagnostics"
if command -v nvidia-smi >/dev/null 2>&1; then nvidia-smi || true; fi
python src/torch_detect_GPU.py

echo "# verifying and extracting the training data"
if [ ! -f MNIST_data.tar.gz ]; then
    echo "error: MNIST_data.tar.gz was not transferred; list it in transfer_input_files." >&2
    exit 1
fi
# Checked against the pins of pixi.toml (transferred with src/) before anything is
# extracted, and extracted only into data/; the job never downloads.
python src/fetch_data.py --no-download --extract .

echo "# training"
# In the background, so that the TERM of an eviction (sent to this script) reaches python,
# which finishes its step and exits (its checkpoint stays in the discarded sandbox).
python src/torch_MNIST.py --data-dir data --save-model --metrics metrics.json \
    --checkpoint checkpoint.pt --checkpoint-every "${CHECKPOINT_MINUTES:-60}" "$@" &
child=$!
trap 'kill -TERM "${child}" 2>/dev/null || true' TERM
status=0
wait "${child}" || status=$?
while kill -0 "${child}" 2>/dev/null; do # the trap interrupted wait: wait for the real exit
    status=0
    wait "${child}" || status=$?
done
if [ "${status}" -eq 85 ]; then
    echo "# checkpointed: exit 85, HTCondor transfers checkpoint.pt and restarts this job"
    exit 85
elif [ "${status}" -ne 0 ]; then
    exit "${status}"
fi
# Leave only what transfer_output_files names, so nothing else is copied back (the
# finished run's checkpoint included: mnist_cnn.pt and metrics.json hold its results).
rm -rf data checkpoint.pt
test -s mnist_cnn.pt && test -s metrics.json
