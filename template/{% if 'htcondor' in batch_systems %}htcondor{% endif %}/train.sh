#!/usr/bin/env bash
# HTCondor job script, the same for the docker, apptainer and pixi-pack flavours.
# Runs in the job's scratch directory; its arguments are passed on to torch_MNIST.py.
set -euo pipefail

# Jobs run as a non-root UID, often with HOME unset or unwritable.
if [ -z "${HOME:-}" ] || [ ! -w "${HOME}" ]; then
    export HOME="${_CONDOR_SCRATCH_DIR:-$PWD}"
fi
echo "# job on $(hostname) as uid $(id -u), in ${PWD}, GPUs: ${CUDA_VISIBLE_DEVICES:-none}"

# Activate the environment: a container's activation script (never its entrypoint,
# whose exec would replace this script), or a pixi-pack executable unpacked here.
if [ -n "${PIXI_PACK_EXECUTABLE:-}" ]; then
    echo "# unpacking ${PIXI_PACK_EXECUTABLE}"
    "./${PIXI_PACK_EXECUTABLE}"
    # shellcheck source=/dev/null
    . ./activate.sh
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

echo "# extracting the training data"
if [ ! -f MNIST_data.tar.gz ]; then
    echo "error: MNIST_data.tar.gz was not transferred; list it in transfer_input_files." >&2
    exit 1
fi
tar -xzf MNIST_data.tar.gz

echo "# training"
python src/torch_MNIST.py --data-dir data --save-model --metrics metrics.json "$@"
# Leave only what transfer_output_files names, so nothing else is copied back.
rm -rf data
test -s mnist_cnn.pt && test -s metrics.json
