"""The synthetic set is learnable by the smallest DenseNet-DeepLab (dense30k12, OS16) on a CPU."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from data import build_dataset
from tests.fixtures_data import compose_cfg


def _miou(model, ds) -> float:
    model.eval()
    cm = np.zeros((4, 4))
    with torch.no_grad():
        for i in range(len(ds)):
            s = ds[i]
            pred = model(s["image"][None])[-1].argmax(1)[0].numpy()
            lab = s["label"].numpy()
            keep = lab != 255
            cm += np.bincount(lab[keep] * 4 + pred[keep], minlength=16).reshape(4, 4)
    iou = np.diag(cm) / (cm.sum(0) + cm.sum(1) - np.diag(cm))
    return 100 * float(iou.mean())


@pytest.mark.slow
def test_dense30k12_learns_synthetic_well_above_chance():
    from models.build import build_model

    torch.manual_seed(0)
    cfg = compose_cfg(["backbone=dense30k12", "dataset.num_val=16"])
    train, val = build_dataset(cfg, "train", True), build_dataset(cfg, "val", False)
    model = build_model(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=2.5e-4)
    before = _miou(model, val)
    for epoch in range(4):  # 48 steps of batch 8
        train.set_epoch(epoch)
        model.train()
        loader = torch.utils.data.DataLoader(train, batch_size=8, shuffle=True, drop_last=True,
                                             generator=torch.Generator().manual_seed(epoch))
        for batch in loader:
            outs = model(batch["image"])
            loss = sum(F.cross_entropy(o, batch["label"], ignore_index=255) for o in outs) / len(outs)
            opt.zero_grad()
            loss.backward()
            opt.step()
    after = _miou(model, val)
    print(f"synthetic val mIoU: {before:.1f} -> {after:.1f} after 48 steps")
    assert after >= 45.0 and after > before + 20, (before, after)  # chance is ~25 (4 classes)
