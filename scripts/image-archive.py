#!/usr/bin/env python3
"""image-archive.py ROOTFS TAG OUT.tar [ENTRYPOINT...]: a docker-archive image of a
root file system, without a Docker engine (for ctr images import)."""
import hashlib, io, json, os, sys, tarfile

rootfs, tag, out = sys.argv[1:4]
entry = sys.argv[4:]
layer = io.BytesIO()
with tarfile.open(fileobj=layer, mode="w") as t:
    t.add(rootfs, arcname=".")
data = layer.getvalue()
diff = "sha256:" + hashlib.sha256(data).hexdigest()
cfg = {"architecture": "amd64", "os": "linux",
       "config": {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin"], "Entrypoint": entry or None},
       "rootfs": {"type": "layers", "diff_ids": [diff]}}
cfgb = json.dumps(cfg).encode()
cfgname = hashlib.sha256(cfgb).hexdigest() + ".json"
manifest = json.dumps([{"Config": cfgname, "RepoTags": [tag], "Layers": ["layer.tar"]}]).encode()
with tarfile.open(out, "w") as t:
    for name, b in (("layer.tar", data), (cfgname, cfgb), ("manifest.json", manifest)):
        ti = tarfile.TarInfo(name); ti.size = len(b); t.addfile(ti, io.BytesIO(b))
