"""transformers.from_pretrained against the hub gives the same embeddings as loading the files from disk."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support import Server, run_python, weightyard_cli

from weightyard.demo import DEMO_REPO, demo_model_path

EMBED = """
import json, sys, torch
from transformers import AutoModel, AutoTokenizer
source = sys.argv[1] if len(sys.argv) > 1 else {source!r}
tokenizer = AutoTokenizer.from_pretrained(source)
model = AutoModel.from_pretrained(source).eval()
batch = tokenizer(["Weightyard keeps models.", "A second, longer sentence about open weights."],
                  padding=True, return_tensors="pt")
with torch.no_grad():
    hidden = model(**batch).last_hidden_state
mask = batch["attention_mask"].unsqueeze(-1).float()
embeddings = (hidden * mask).sum(1) / mask.sum(1)
print(json.dumps(embeddings.tolist()))
"""


def test_from_pretrained_through_the_hub_matches_local_files(server: Server, tmp_path: Path) -> None:
    env = {"HF_TOKEN": server.token, "WEIGHTYARD_ENDPOINT": server.url}
    # Repos live under an existing user or organisation (another test may have created it already).
    weightyard_cli("org", "create", DEMO_REPO.split("/")[0], "--data", str(server.data))
    pushed = weightyard_cli("push", str(demo_model_path()), DEMO_REPO, env=env)
    assert pushed.returncode == 0, pushed.stderr
    offline = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": str(tmp_path / "local-home")}
    local = run_python(EMBED.format(source=str(demo_model_path())), offline)
    assert local.returncode == 0, local.stderr
    hub_env = {
        "HF_ENDPOINT": server.url,
        "HF_HOME": str(tmp_path / "hub-home"),
        "HF_TOKEN": "",
        "DISABLE_SAFETENSORS_CONVERSION": "1",
    }
    remote = run_python(EMBED.format(source=DEMO_REPO), hub_env)
    assert remote.returncode == 0, remote.stderr
    assert json.loads(remote.stdout) == json.loads(local.stdout)
    assert len(json.loads(remote.stdout)[0]) == 384
    snapshots = list((tmp_path / "hub-home" / "hub").glob("models--*/snapshots/*/model.safetensors"))
    assert len(snapshots) == 1
