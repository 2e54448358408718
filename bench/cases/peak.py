"""The machine's matmul peak, measured on the spot: FLOP/s of a square ``torch.mm`` in fp32 and bf16.

Best of --trials timed loops of about --seconds each, after a warm-up, with --threads threads.
FLOPs per product: 2 n^3. Prints one JSON line.
"""

import argparse
import json
import time

import torch


def measure(n: int, dtype: torch.dtype, seconds: float, trials: int) -> float:
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    out = torch.empty(n, n, dtype=dtype)
    for _ in range(3):
        torch.mm(a, b, out=out)
    best = 0.0
    for _ in range(trials):
        count, started = 0, time.perf_counter()
        while True:
            torch.mm(a, b, out=out)
            count += 1
            elapsed = time.perf_counter() - started
            if elapsed >= seconds:
                break
        best = max(best, 2 * n**3 * count / elapsed)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2048)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--trials", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    result = {"n": args.n, "threads": torch.get_num_threads(), "torch": torch.__version__,
              "fp32_flops": measure(args.n, torch.float32, args.seconds, args.trials),
              "bf16_flops": measure(args.n, torch.bfloat16, args.seconds, args.trials)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
