#!/usr/bin/env bash
# Training on one CUDA GPU in a few minutes: ResNetSE34L + AM-softmax, mixed precision, ~300 steps,
# first as one process, then through torchrun (DDP over NCCL, one process per GPU). Prints crops/s
# and peak GPU memory of each; without a GPU it says so and exits 0.
#   bash bench/gpu_check.sh [--steps 300] [--batch 128] [--keep DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
steps=300; batch=128; keep=""
while [ $# -gt 0 ]; do
  case "$1" in
    --steps) steps=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --keep) keep=$2; shift 2 ;;
    *) echo "usage: $0 [--steps N] [--batch B] [--keep DIR]" >&2; exit 1 ;;
  esac
done
[ -f .venv/bin/activate ] && . .venv/bin/activate
ngpu=$(python -c "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)")
if [ "$ngpu" -eq 0 ]; then
  echo "gpu_check: no CUDA GPU here (torch.cuda.is_available() is False); nothing to check"
  exit 0
fi
python -c "import torch; print('gpu_check:', torch.cuda.get_device_name(0), '| torch', torch.__version__, '| CUDA', torch.version.cuda)"
work=${keep:-$(mktemp -d /tmp/gpu_check.XXXXXX)}
[ -n "$keep" ] || trap 'rm -rf "$work"' EXIT
mkdir -p "$work"

# A synthetic store: 256 speakers x 20 utterances x 230 frames of 80-dim features.
speakers=256; utts=20
python - "$work/store" "$speakers" "$utts" <<'PY'
import sys
from pathlib import Path
import numpy as np
from pyspeaker.store.features import FeatureStoreWriter
out, speakers, utts = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
out.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
centres = rng.normal(0, 1, (speakers, 80)).astype(np.float32)
lines = []
with FeatureStoreWriter(out / "feats.h5", 80, {"feat_id": "gpu_check", "config": "{}"}) as w:
    for s in range(speakers):
        for u in range(utts):
            utt = f"s{s:04d}-{u:03d}"
            w.add(utt, centres[s] + rng.normal(0, 1, (230, 80)).astype(np.float32))
            lines.append(f"{utt} s{s:04d}\n")
(out / "utt2spk").write_text("".join(lines))
PY
per_epoch=$(( speakers * utts / batch ))
epochs=$(( (steps + per_epoch - 1) / per_epoch ))
sets=(--set "data.batch_size=$batch" --set data.crop_frames=200 --set "train.max_epoch=$epochs"
      --set data.num_workers=2 --set train.device=cuda)
echo "gpu_check: $epochs epochs x $per_epoch steps of $batch crops (200 frames), mixed precision"

report() {  # crops/s and peak memory from train.log (epochs after the first: no start-up cost)
  python - "$1/train.log" "$2" <<'PY'
import re, statistics, sys
rates, mems = [], []
for line in open(sys.argv[1]):
    m = re.search(r"epoch (\d+)/\d+: .*\((\d+) crops/s, peak GPU memory (\d+) MiB\)", line)
    if m:
        rates.append((int(m.group(1)), int(m.group(2))))
        mems.append(int(m.group(3)))
if not rates:
    sys.exit(f"{sys.argv[2]}: no epoch lines in {sys.argv[1]}")
later = [r for e, r in rates if e > 1] or [r for _, r in rates]
print(f"gpu_check: {sys.argv[2]:28s} {statistics.median(later):7.0f} crops/s (median of epochs 2+), "
      f"peak GPU memory {max(mems)} MiB")
PY
}

t0=$(date +%s)
python -m pyspeaker train --config conf/resnet34l_amsoftmax.yaml --features "$work/store" --exp-dir "$work/single" \
  --mixedprec --no-progress "${sets[@]}" > /dev/null 2> "$work/single.err" \
  || { tail -20 "$work/single.err"; exit 1; }
report "$work/single" "single process"
echo "gpu_check: single process took $(( $(date +%s) - t0 )) s"

t0=$(date +%s)
torchrun --standalone --nnodes 1 --nproc-per-node "$ngpu" -m pyspeaker train --config conf/resnet34l_amsoftmax.yaml \
  --features "$work/store" --exp-dir "$work/ddp" --mixedprec --no-progress "${sets[@]}" > /dev/null 2> "$work/ddp.err" \
  || { tail -20 "$work/ddp.err"; exit 1; }
report "$work/ddp" "torchrun, $ngpu process(es)"
grep -h "identical weights\|disjoint" "$work/ddp/train.log" | tail -2 | sed 's/^/gpu_check:   /'
echo "gpu_check: torchrun took $(( $(date +%s) - t0 )) s"
echo "gpu_check: OK"
