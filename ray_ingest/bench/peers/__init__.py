"""The loaders users would pick instead of ours, as rows of the throughput study, each over the
same records of the same run: NVIDIA DALI's CPU pipeline on our shards and ``.idx`` files
(:mod:`.dali`), MosaicML Streaming over MDS shards of the same JPEG bytes (:mod:`.mosaic`),
and the torch ``DataLoader`` over the same bytes as image files (:mod:`.torch_files`).

Each row needs its package (``pip install 'ray-ingest[bench-peers]'``); a row whose package
is missing is skipped with one line saying what to install. Heavy imports stay inside the
functions that run a row.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

from ray_ingest.bench.peers import dali, mosaic, torch_files
from ray_ingest.bench.peers.common import GROUP

#: Row name -> (factory of its Variant, probe: None when it can run here, else the reason).
_PEERS = {
    dali.ROW: (dali.make_row, dali.missing),
    mosaic.ROW: (mosaic.make_row, mosaic.missing),
    torch_files.PIL_ROW: (torch_files.make_pil_row, torch_files.missing),
    torch_files.SIMPLEJPEG_ROW: (torch_files.make_simplejpeg_row, torch_files.missing),
    torch_files.TORCHVISION_ROW: (torch_files.make_torchvision_row,
                                  torch_files.missing_torchvision),
}
PEER_ROWS: Tuple[str, ...] = tuple(_PEERS)
__all__ = ["GROUP", "PEER_ROWS", "factory", "missing", "split_available"]


def factory(name: str) -> Callable:
    return _PEERS[name][0]


def missing(name: str) -> Optional[str]:
    """Why the peer row ``name`` cannot run here (its package is not installed), or None."""
    return _PEERS[name][1]()


def split_available(names: List[str]) -> Tuple[List[str], Dict[str, str]]:
    """``names`` cut into the peer rows that can run here and ``{row: why not}`` for the
    others."""
    ok, skipped = [], {}
    for name in names:
        why = missing(name)
        if why is None:
            ok.append(name)
        else:
            skipped[name] = why
    return ok, skipped
