"""Synthetic OCI images for bench/run, written as one OCI image layout.

Layers are random bytes wrapped in *stored* gzip (deflate level 0): skopeo
never recompresses a gzip layer on the way to a registry, so every digest
stays as written here, while the bytes stay incompressible. Layers are
streamed to disk in chunks and hashed on the way (compressed bytes give the
digest, uncompressed ones the diff_id), so a 1 GiB image never sits in memory.
"""
import hashlib
import json
import os
import zlib
from dataclasses import dataclass, field

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
CHUNK = 4 << 20


@dataclass
class Image:
    tag: str                  # the tag in the layout's index.json (= skopeo's oci:DIR:TAG)
    top_digest: str           # what the tag points at (index for multi-arch, else the manifest)
    top_size: int
    config_digest: str = ""   # single-arch only
    layers: list[tuple[str, int]] = field(default_factory=list)  # (digest, size), all platforms
    total_bytes: int = 0      # every blob the image references, manifests included


class Layout:
    def __init__(self, path: str):
        self.path = path
        self.blob_dir = os.path.join(path, "blobs", "sha256")
        os.makedirs(self.blob_dir, exist_ok=True)
        self.index: list[dict] = []
        self.seed = 0

    def blob_path(self, digest: str) -> str:
        return os.path.join(self.blob_dir, digest.split(":", 1)[1])

    def _put(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        with open(self.blob_path(digest), "wb") as f:
            f.write(data)
        return digest

    def _random_layer(self, size: int) -> tuple[str, int, str]:
        """A stored-gzip layer of about `size` random bytes -> (digest, size, diff_id)."""
        self.seed += 1
        tmp = os.path.join(self.blob_dir, f".tmp-{self.seed}")
        digest, diff_id = hashlib.sha256(), hashlib.sha256()
        z = zlib.compressobj(0, zlib.DEFLATED, 31)   # wbits 31: gzip framing
        written = 0
        with open(tmp, "wb") as f:
            left = size
            while left > 0:
                raw = os.urandom(min(CHUNK, left))
                left -= len(raw)
                diff_id.update(raw)
                out = z.compress(raw)
                digest.update(out)
                f.write(out)
                written += len(out)
            out = z.flush()
            digest.update(out)
            f.write(out)
            written += len(out)
        d = "sha256:" + digest.hexdigest()
        os.replace(tmp, self.blob_path(d))
        return d, written, "sha256:" + diff_id.hexdigest()

    def _manifest(self, layer_sizes: list[int], arch: str) -> tuple[str, int, str, list[tuple[str, int]], int]:
        """-> (manifest digest, manifest size, config digest, [(layer digest, size)], config size)"""
        layers = [self._random_layer(n) for n in layer_sizes]
        cfg = json.dumps({
            "architecture": arch, "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [x[2] for x in layers]},
            "config": {"Cmd": ["/bin/sh"]},
        }).encode()
        cfg_d = self._put(cfg)
        man = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": cfg_d, "size": len(cfg)},
            "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": d, "size": n} for d, n, _ in layers],
        }).encode()
        return self._put(man), len(man), cfg_d, [(d, n) for d, n, _ in layers], len(cfg)

    def image(self, tag: str, layer_sizes: list[int]) -> Image:
        man_d, man_n, cfg_d, layers, cfg_n = self._manifest(layer_sizes, "amd64")
        img = Image(tag, man_d, man_n, cfg_d, layers,
                    man_n + cfg_n + sum(n for _, n in layers))
        self._tag(tag, man_d, man_n, OCI_MANIFEST)
        return img

    def multi_arch(self, tag: str, layer_sizes: list[int], arches: list[str]) -> Image:
        """An image index over one image per architecture, each with its own layers."""
        entries, layers, total = [], [], 0
        for arch in arches:
            man_d, man_n, _, lay, cfg_n = self._manifest(layer_sizes, arch)
            entries.append({"mediaType": OCI_MANIFEST, "digest": man_d, "size": man_n,
                            "platform": {"architecture": arch, "os": "linux"}})
            layers += lay
            total += man_n + cfg_n + sum(n for _, n in lay)
        idx = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
        idx_d = self._put(idx)
        self._tag(tag, idx_d, len(idx), OCI_INDEX)
        return Image(tag, idx_d, len(idx), "", layers, total + len(idx))

    def _tag(self, tag: str, digest: str, size: int, media_type: str) -> None:
        self.index.append({"mediaType": media_type, "digest": digest, "size": size,
                           "annotations": {"org.opencontainers.image.ref.name": tag}})
        with open(os.path.join(self.path, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)
        with open(os.path.join(self.path, "index.json"), "w") as f:
            json.dump({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.index}, f)
