#!/usr/bin/env bash
# make test-torch: checks sambench's checkpoint and bank formats against
# PyTorch itself (Debian's python3-torch 1.13, installed by the target):
#  1. torch.load accepts `sambench init-random` files of every variant, with
#     the official tensor and parameter counts;
#  2. files torch.save / pickle.dump write (float32/16/64, bfloat16, int64,
#     bool, strided views, transposes, shared storages; a bank of views
#     with a bf16 iou) read back through `sambench convert` / `inspect`
#     with every value identical.
set -euo pipefail
bin=${1:-build/bin/sambench}
py=/usr/bin/python3
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
export OPENBLAS_NUM_THREADS=1
fail=0
for v in samed2:740:58481442 sam2_hiera_s:516:46044098 sam2_hiera_t:468:38946242 sam_vit_b:314:93735728; do
    IFS=: read -r name tensors params <<<"$v"
    "$bin" init-random --variant "$name" --seed 3 "$d/$name.pth" >/dev/null
    got=$("$py" -c "
import torch, sys
sd = torch.load(sys.argv[1], map_location='cpu')
sd = sd.get('model', sd)
print(len(sd), sum(t.numel() for t in sd.values()))" "$d/$name.pth")
    if [ "$got" = "$tensors $params" ]; then echo "ok   torch.load $name: $got"
    else echo "FAIL torch.load $name: got '$got', expected '$tensors $params'"; fail=1; fi
    rm -f "$d/$name.pth"
done
"$py" - "$d" <<'PY'
import sys, torch, pickle
d = sys.argv[1]
torch.manual_seed(0)
base = torch.randn(6, 10)
sd = {"a.f32": torch.randn(3, 4), "b.f16": torch.randn(5).half(), "c.bf16": torch.randn(2, 3).bfloat16(),
      "d.view": base[1:4, ::2], "e.t": base.t(), "f.f64": torch.randn(4).double(), "g.i64": torch.arange(5),
      "h.bool": torch.tensor([True, False, True]), "i.shared": base[2]}
torch.save({"model": sd}, f"{d}/ck.pth")
for k, v in sd.items():
    v.float().contiguous().numpy().astype('<f4').tofile(f"{d}/{k}.bin")
bank = []
for i in range(3):
    big = torch.randn(2, 4, 3, 3).bfloat16()
    bank.append([big[1:2], torch.randn(1, 4, 3, 3).bfloat16(), torch.tensor(0.5 + 0.1 * i).bfloat16(),
                 torch.randn(2 * 36)[:36]])
pickle.dump(bank, open(f"{d}/bank.pkl", "wb"))
PY
"$bin" convert "$d/ck.pth" "$d/ck.h5" >/dev/null
for k in a.f32 b.f16 c.bf16 d.view e.t f.f64 g.i64 h.bool i.shared; do
    h5dump -d "/$k" -b LE -o "$d/$k.out" "$d/ck.h5" >/dev/null
    if cmp -s "$d/$k.out" "$d/$k.bin"; then echo "ok   torch.save $k read identically"
    else echo "FAIL torch.save $k differs"; fail=1; fi
done
if "$bin" inspect "$d/bank.pkl" --format json | grep -q '"entries": 3'; then echo "ok   pickle.dump bank of views with bf16 iou"
else echo "FAIL bank"; fail=1; fi
exit $fail
