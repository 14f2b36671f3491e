#!/usr/bin/env bash
# Training on one CUDA GPU in a few minutes: ResNetSE34L + AM-softmax, mixed precision, ~300 steps,
# first as one process, then through torchrun (DDP over NCCL, one process per GPU), in two cases:
#   store      crops of a feature store (in memory);
#   augmented  crops of WAVs, MUSAN-layout noise / music / babble + RIRs + speed perturbation +
#              SpecAugment, the batched augmentation and fbank on the GPU (data.on_device).
# Prints crops/s, the share of the step spent waiting for data and peak GPU memory of each; without
# a GPU it says so and exits 0.
#   bash bench/gpu_check.sh [--steps 300] [--batch 128] [--speakers 256] [--keep DIR]
#   bash bench/gpu_check.sh --device cpu --steps 2 --batch 8 --speakers 8   (a smoke run of the script on CPU)
set -euo pipefail
cd "$(dirname "$0")/.."
steps=300; batch=128; keep=""; device=cuda; speakers=256
while [ $# -gt 0 ]; do
  case "$1" in
    --steps) steps=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --speakers) speakers=$2; shift 2 ;;
    --device) device=$2; shift 2 ;;
    --keep) keep=$2; shift 2 ;;
    *) echo "usage: $0 [--steps N] [--batch B] [--speakers N] [--device cuda|cpu] [--keep DIR]" >&2; exit 1 ;;
  esac
done
[ -f .venv/bin/activate ] && . .venv/bin/activate
if [ "$device" = cpu ]; then
  ngpu=1; mem_re=""  # the smoke run: one gloo process under torchrun, no GPU memory figures
else
  ngpu=$(python -c "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)")
  if [ "$ngpu" -eq 0 ]; then
    echo "gpu_check: no CUDA GPU here (torch.cuda.is_available() is False); nothing to check"
    exit 0
  fi
  python -c "import torch; print('gpu_check:', torch.cuda.get_device_name(0), '| torch', torch.__version__, '| CUDA', torch.version.cuda)"
  mem_re="peak GPU memory"
fi
work=${keep:-$(mktemp -d /tmp/gpu_check.XXXXXX)}
[ -n "$keep" ] || trap 'rm -rf "$work"' EXIT
mkdir -p "$work"

# A synthetic store: 256 speakers x 20 utterances x 230 frames of 80-dim features; and the same
# speakers as 3 s WAVs (16 kHz) with a MUSAN-layout noise dir and RIRs, for the augmented case.
utts=20
python - "$work" "$speakers" "$utts" <<'PY'
import sys
from pathlib import Path
import numpy as np
import soundfile as sf
from pyspeaker.store.features import FeatureStoreWriter
work, speakers, utts = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
out = work / "store"
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
audio, wav = work / "audio", []
audio.mkdir()
t = np.arange(48000) / 16000
for s in range(speakers):  # a speaker: a pitch and a formant-ish tone, plus noise
    f0 = 80 + 3 * (s % 60)
    for u in range(utts):
        x = 0.1 * np.sin(2 * np.pi * f0 * t * (1 + 0.01 * u)) + 0.05 * np.sin(2 * np.pi * (700 + 7 * s) * t)
        p = audio / f"s{s:04d}-{u:03d}.wav"
        sf.write(p, (x + rng.normal(0, 0.02, t.size)).astype(np.float32), 16000, subtype="PCM_16")
        wav.append(f"s{s:04d}-{u:03d} {p}\n")
(audio / "wav.scp").write_text("".join(wav))
(audio / "utt2spk").write_text("".join(lines))
for kind, count, secs in (("noise", 20, 8), ("music", 10, 30), ("speech", 20, 20)):
    (work / "musan" / kind).mkdir(parents=True)
    for i in range(count):
        sf.write(work / "musan" / kind / f"{kind}-{i:04d}.wav", rng.normal(0, 0.1, 16000 * secs).astype(np.float32),
                 16000, subtype="PCM_16")
(work / "rirs").mkdir()
for i in range(20):
    h = rng.normal(0, 1, 8000) * np.exp(-np.arange(8000) / 1500)
    sf.write(work / "rirs" / f"rir{i:03d}.wav", h.astype(np.float32), 16000)
PY
per_epoch=$(( speakers * utts / batch ))
epochs=$(( (steps + per_epoch - 1) / per_epoch ))
sets=(--set "data.batch_size=$batch" --set data.crop_frames=200 --set "train.max_epoch=$epochs"
      --set data.num_workers=2 --set "train.device=$device")
echo "gpu_check: $epochs epochs x $per_epoch steps of $batch crops (200 frames), mixed precision"

report() {  # crops/s, data wait and peak memory from train.log (epochs after the first: no start-up cost)
  python - "$1/train.log" "$2" "$mem_re" <<'PY'
import re, statistics, sys
rows = []
for line in open(sys.argv[1]):
    m = re.search(r"epoch (\d+)/\d+: .*\((\d+) crops/s, data wait ([\d.]+) %(?:, peak GPU memory (\d+) MiB)?", line)
    if m and (m.group(4) or not sys.argv[3]):
        rows.append((int(m.group(1)), int(m.group(2)), float(m.group(3)), int(m.group(4) or 0)))
if not rows:
    sys.exit(f"{sys.argv[2]}: no epoch lines in {sys.argv[1]}")
later = [r for r in rows if r[0] > 1] or rows
print(f"gpu_check: {sys.argv[2]:40s} {statistics.median(r[1] for r in later):7.0f} crops/s, "
      f"data wait {statistics.median(r[2] for r in later):4.1f} % (medians of epochs 2+)"
      + (f", peak GPU memory {max(r[3] for r in rows)} MiB" if sys.argv[3] else ""))
PY
}

run_case() {  # NAME ARGS...: one process, then torchrun
  local name=$1 t0; shift
  t0=$(date +%s)
  python -m pyspeaker train --config conf/resnet34l_amsoftmax.yaml --exp-dir "$work/$name-single" \
    --mixedprec --no-progress "${sets[@]}" "$@" > /dev/null 2> "$work/$name-single.err" \
    || { tail -20 "$work/$name-single.err"; exit 1; }
  report "$work/$name-single" "$name, single process"
  echo "gpu_check: $name, single process took $(( $(date +%s) - t0 )) s"
  t0=$(date +%s)
  torchrun --standalone --nnodes 1 --nproc-per-node "$ngpu" -m pyspeaker train --config conf/resnet34l_amsoftmax.yaml \
    --exp-dir "$work/$name-ddp" --mixedprec --no-progress "${sets[@]}" "$@" > /dev/null 2> "$work/$name-ddp.err" \
    || { tail -20 "$work/$name-ddp.err"; exit 1; }
  report "$work/$name-ddp" "$name, torchrun, $ngpu process(es)"
  grep -h "identical weights\|disjoint" "$work/$name-ddp/train.log" | tail -2 | sed 's/^/gpu_check:   /'
  echo "gpu_check: $name, torchrun took $(( $(date +%s) - t0 )) s"
}

run_case store --features "$work/store"
run_case augmented --data-dir "$work/audio" --set data.feat_conf=conf/fbank.conf \
  --set "augment.noise_dir=$work/musan" --set "augment.rir_dir=$work/rirs" --set augment.prob=1.0 \
  --set augment.speed_perturb=true --set augment.specaugment=true --set "augment.bank_dir=$work/banks"
echo "gpu_check: OK"
