"""Start N local processes of one command, joined by JAX's distributed runtime.

    python -m jaxmsk.launch -n 2 [--devices-per-process 2] [--port P] -- <command ...>

Each process gets `JAX_COORDINATOR_ADDRESS` (127.0.0.1 and a free port), `JAX_NUM_PROCESSES`
and `JAX_PROCESS_ID`, which `jaxmsk.distributed.initialize()` (the `--distributed` flag of
jaxmsk's commands) reads; `--devices-per-process D` adds
`--xla_force_host_platform_device_count=D` to `XLA_FLAGS` (D host devices per process on
CPU). Output lines of processes 1 … N−1 are prefixed with their id ("[1] "); process 0's
are passed on as they are. If one process fails the others are
stopped; the exit status is the first non-zero one (0 when all succeed). On a cluster use
its manager instead (SLURM: `srun`; see docs/cluster.md): `initialize()` reads it.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time


def free_port() -> int:
    """A TCP port free on this machine now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pump(stream, prefix: str, out) -> None:
    for line in iter(stream.readline, b""):
        out.write(prefix + line.decode(errors="replace"))
        out.flush()
    stream.close()


def launch(command: list[str], n: int, *, devices_per_process: int | None = None,
           port: int | None = None, env: dict | None = None, timeout: float | None = None,
           prefix: bool = True) -> int:
    """Run `command` in `n` processes joined as one JAX job; returns the exit status."""
    if n < 1:
        raise ValueError(f"launch: the number of processes must be ≥ 1, got {n}")
    if not command:
        raise ValueError("launch: no command given; write it after `--`")
    port = free_port() if port is None else port
    base = dict(os.environ if env is None else env)
    base.update(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES=str(n))
    if devices_per_process is not None:
        flags = [f for f in base.get("XLA_FLAGS", "").split()
                 if not f.startswith("--xla_force_host_platform_device_count")]
        base["XLA_FLAGS"] = " ".join(
            flags + [f"--xla_force_host_platform_device_count={devices_per_process}"])
    procs, pumps = [], []
    for rank in range(n):
        proc = subprocess.Popen(command, env={**base, "JAX_PROCESS_ID": str(rank)},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        procs.append(proc)
        tag = f"[{rank}] " if prefix and rank > 0 else ""  # process 0 speaks plainly
        t = threading.Thread(target=_pump, args=(proc.stdout, tag, sys.stdout), daemon=True)
        t.start()
        pumps.append(t)
    status, start = 0, time.monotonic()
    try:
        while any(p.poll() is None for p in procs):
            failed = [p.returncode for p in procs if p.returncode not in (None, 0)]
            if failed:
                status = failed[0]
                break
            if timeout is not None and time.monotonic() - start > timeout:
                print(f"launch: timed out after {timeout:.0f} s; stopping the processes",
                      file=sys.stderr)
                status = 124
                break
            time.sleep(0.05)
    except KeyboardInterrupt:
        status = 130
    for p in procs:  # stop what still runs (a failed peer would otherwise wait forever)
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    for t in pumps:
        t.join(timeout=5)
    if status == 0:
        status = next((p.returncode for p in procs if p.returncode != 0), 0)
    return status


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--" in argv:
        i = argv.index("--")
        own, command = argv[:i], argv[i + 1:]
    else:
        own, command = argv, []
    ap = argparse.ArgumentParser(prog="python -m jaxmsk.launch",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", "--processes", type=int, required=True, help="number of processes")
    ap.add_argument("--devices-per-process", type=int, default=None,
                    help="CPU host devices per process (XLA_FLAGS); default: XLA's")
    ap.add_argument("--port", type=int, default=None, help="coordinator port (default: free)")
    ap.add_argument("--timeout", type=float, default=None, help="stop all after this many s")
    args = ap.parse_args(own)
    if not command:
        ap.error("give the command after `--`, e.g. `python -m jaxmsk.launch -n 2 -- "
                 "python -m benchmarks.simulate --distributed --batch 64`")
    if args.processes < 1:
        ap.error(f"-n must be ≥ 1, got {args.processes}")
    return launch(command, args.processes, devices_per_process=args.devices_per_process,
                  port=args.port, timeout=args.timeout)


if __name__ == "__main__":
    raise SystemExit(main())
