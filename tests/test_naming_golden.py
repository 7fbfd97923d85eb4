"""Every notes name keeps its canonical spelling and config hash (the run keys of existing stores).

Recorded from the codec before the one-table rewrite (Hydra composition of each name). The only
changes are the ones issue 12.3 asks for, listed in ``CHANGED`` with the reason.
"""

from __future__ import annotations

import pytest

from sweeper import naming
from tests.conftest import notes_names

#: notes name -> (canonical name, config hash) of the codec before the rewrite
BEFORE = {
    'deeplabv2.voc.imagesize473':
        ('voc.imagenet.imagesize473.resnet101.scale8', 'bfbfde49b75ff3e4'),
    'deeplabv2.voc.imagesize473.scratch.lr1e-1':
        ('voc.scratch.imagesize473.resnet101.scale8.lr1e-1', 'ffb2a618b0728607'),
    'deeplabv2.voc.imagesize473.scratch.lr1e-2':
        ('voc.scratch.imagesize473.resnet101.scale8.lr1e-2', 'b98fa182a98b46da'),
    'deeplabv2.voc_train.imagesize321.scale50.scratch':
        ('voc_train.scratch.imagesize321.resnet101.scale50', 'd657146b9a7ea817'),
    'deeplabv2.voc.imagesize473.scratch':
        ('voc.scratch.imagesize473.resnet101.scale8', '00c0871e5a00328a'),
    'deeplabv2.voc.scale16.imagesize473.scratch':
        ('voc.scratch.imagesize473.resnet101.scale16', '7a63d613390ac40b'),
    'deeplabv2.voc.imagesize321.densenet31k48.scratch':
        ('voc.scratch.imagesize321.dense30k48.scale8', '4ea25b2b98fcd19f'),
    'deeplabv2.voc.imagesize321.densenet31k60.scratch':
        ('voc.scratch.imagesize321.dense30k60.scale8', 'a551705449bf1c30'),
    'deeplabv2.voc.imagesize321.densenet121k48.scratch':
        ('voc.scratch.imagesize321.dense121k48.scale8', 'a40614395928ee9b'),
    'deeplabv2.voc.imagesize321.densenet121k60.scratch':
        ('voc.scratch.imagesize321.dense121k60.scale8', 'ce42f0c8b6b1a8f4'),
    'deeplabv2.voc.imagesize321.scratch':
        ('voc.scratch.imagesize321.resnet101.scale8', 'bd1e7339e675ee69'),
    'deeplabv2.camvid.imagesize473.scratch_acturally321':
        ('camvid.scratch.imagesize321.resnet101.scale320', '30a67bf83993b9cd'),
    'deeplabv2.camvid.imagesize473.scratch':
        ('camvid.scratch.imagesize473.resnet101.scale320', '79222e138b3504c8'),
    'deeplabv2.camvid.imagesize473.res50.scratch':
        ('camvid.scratch.imagesize473.resnet50.scale320', '991affea967de062'),
    'deeplabv2.camvid.imagesize473.toy.realtest.scratch':
        ('camvid.scratch.imagesize473.dense30k36.scale32', '18548cb60c208f43'),
    'deeplabv2.camvid.imagesize473.toy.resnet101.scratch':
        ('camvid.scratch.imagesize473.resnet101.scale32', 'a84a1995bd624f58'),
    'deeplabv2.camvid.imagesize473.toy.densenet121k32.realtest.scratch':
        ('camvid.scratch.imagesize473.dense121k32.scale32', '1f2db34dec842ceb'),
    'deeplabv2.camvid.imagesize473.toy.nocompression.realtest.scratch':
        ('camvid.scratch.imagesize473.nocompression.dense30k36.scale32', 'c2cac314dbb62917'),
    'deeplabv2.camvid.imagesize473.toy.stem.realtest.scratch':
        ('camvid.scratch.imagesize473.stem.dense30k36.scale32', '0e85025acfd978ed'),
    'deeplabv2.camvid.imagesize473.toy.k60.realtest.scratch':
        ('camvid.scratch.imagesize473.dense30k60.scale32', '2ac29a55d8cbda71'),
    'deeplabv2.camvid.imagesize473.toy.newbaseline.realtest.scratch':
        ('camvid.scratch.imagesize473.dense30k36.scale32', '18548cb60c208f43'),
    'deeplabv2.camvid.imagesize473.toy.newbaseline.removeLatterPooling.realtest.scratch':
        ('camvid.scratch.imagesize473.nopooling.dense30k36.scale32', '846b9e35ac194739'),
    'deeplabv2.camvid.imagesize321.toy.realtest.scratch':
        ('camvid.scratch.imagesize321.dense30k36.scale32', '9cfeb650fb01eb33'),
    'deeplabv2.camvid..imagesize321.toy.newbaseline.dense30k36.py':
        ('camvid.scratch.imagesize321.dense30k36.scale32', '9cfeb650fb01eb33'),
    'deeplabv2.camvid..imagesize321.toy.newbaseline.stem.nocompression.nopooling.dense30k36':
        ('camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k36.scale32', '62e7359bc3476f37'),
    'deeplabv2.camvid..imagesize321.toy.newbaseline.stem.nocompression.nopooling.dense30k36.senet(ratio=8)':
        ('camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k36.senet8.scale32', '6a9834288b3d0af6'),
    'deeplabv2.camvid..imagesize321.toy.newbaseline.stem.nocompression.nopooling.dense30k36.senet1':
        ('camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k36.senet1.scale32', '24f654c7ea51b126'),
    'deeplabv2.camvid..imagesize321.toy.newbaseline.stem.nocompression.nopooling.dense30k36.senet4':
        ('camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k36.senet4.scale32', '83f61e6bc5c4dffc'),
    'deeplabv2.camvid..imagesize321.toy.newbaseline.stem.nocompression.nopooling.dense30k36.senet4.did':
        ('camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k36.senet4.did8.scale32', 'd46f9a76aa107793'),
    'deeplabv2.camvid..imagesize321.toy.newbaseline.stem.nocompression.nopooling.dense30k36.senet4.did4':
        ('camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k36.senet4.did4.scale32', '6e5e809d3c19288f'),
    'deeplabv2.camvid..imagesize321.toy.newbaseline.stem.nocompression.nopooling.dense30k48':
        ('camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.scale32', '8fed46ee9e5a509b'),
    'deeplabv2.camvid..imagesize360x480.toy.newbaseline.stem.nocompression.nopooling.dense30k48':
        ('camvid.scratch.imagesize360x480.stem.nocompression.nopooling.dense30k48.scale32', 'dc9e63084a8f1529'),
    'deeplabv2.camvid..imagesize360x480.toy.newbaseline.stem.nocompression.nopooling.dense30k48.batchsize16':
        ('camvid.scratch.imagesize360x480.stem.nocompression.nopooling.dense30k48.scale32.batchsize16', 'f43e4c74f737196a'),
    'deeplabv2.camvid..imagesize321.toy.newbaseline.stem.nocompression.nopooling.dense42k48':
        ('camvid.scratch.imagesize321.stem.nocompression.nopooling.dense42k48.scale32', '8fc11ddfecbe065e'),
    'deeplabv2.camvid..imagesize225.toy.newbaseline.stem.nocompression.nopooling.dense30k48':
        ('camvid.scratch.imagesize225.stem.nocompression.nopooling.dense30k48.scale32', 'd9ec3c7dd6311ee4'),
    'deeplabv2.camvid..imagesize321.toy.newbaseline.stem.nocompression.nopooling.dense30k48.nodropout':
        ('camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.scale32.nodropout', '8fed46ee9e5a509b'),
    'deeplabv2.camvid..imagesize321.toy.newbaseline.stem.nocompression.nopooling.dense30k48.senet4':
        ('camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.senet4.scale32', '93097d28a5c74cbe'),
    'deeplabv2.camvid..imagesize321.toy.newbaseline.stem.nocompression.nopooling.dense30k48.newdid':
        ('camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid.scale32', '444a0029118df403'),
    'deeplabv2.camvid..imagesize321.toy.newbaseline.stem.nocompression.nopooling.dense30k48.newdid2':
        ('camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid2.scale32', 'c1dfb7903cb12441'),
    'deeplabv2.camvid..imagesize321.toy.newbaseline.stem.nocompression.nopooling.dense30k48.newdid4':
        ('camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid4.scale32', '248e9480caf61c86'),
    'deeplabv2.camvid..imagesize321.toy.newbaseline.stem.nocompression.nopooling.dense30k48.newdid4_1':
        ('camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid4_1.scale32', 'd990723afb631281'),
    'deeplabv2.camvid..imagesize321.toy.newbaseline.stem.nocompression.nopooling.dense30k48.newdid6':
        ('camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.scale32', 'f4786cc0c439a42c'),
    'deeplabv2.camvid..imagesize321.toy.newbaseline.stem.nocompression.nopooling.dense30k48.newdid6_senet':
        ('camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6_senet.scale32', '85b5852f7cb8e5d1'),
    'deeplabv2.camvid..imagesize321.toy.newbaseline.stem.nocompression.nopooling.dense30k48.transitionsenet2':
        ('camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.transitionsenet2.scale32', 'f68001ca4b5c05e1'),
    'deeplabv2.camvid..imagesize321.toy.newbaseline.stem.nocompression.nopooling.dense30k48.transitionsenet4':
        ('camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.transitionsenet4.scale32', 'b9b85614a0ab8337'),
    'deeplabv2.camvid..imagesize321.toy.newbaseline.stem.nocompression.nopooling.dense30k36(actually48).senet4':
        ('camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.senet4.scale32', '93097d28a5c74cbe'),
    'deeplabv2.camvid..imagesize321.toy.newbaseline.stem.nocompression.nopooling.dense30k36(actually48).senet4.did':
        ('camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.senet4.did8.scale32', '63d19ccef1243631'),
    'deeplabv2.camvid.imagesize321.toy.resnet50.scratch':
        ('camvid.scratch.imagesize321.resnet50.scale32', 'd26bb0994231d394'),
    'deeplabv2.camvid.imagesize321.toy.baselline.stem.nocompression.nopooling.dense121k24.senet4':
        ('camvid.scratch.imagesize321.stem.nocompression.nopooling.dense121k24.senet4.scale32', '96ba8a493a898bf9'),
    'camvid.scratch.imagesize473.stem.nocompression.nopooling.dense30k36':
        ('camvid.scratch.imagesize473.stem.nocompression.nopooling.dense30k36.scale320', '057be959c693f759'),
    'camvid.scratch.imagesize473.densenet30k48':
        ('camvid.scratch.imagesize473.dense30k48.scale320', '8837852e211f59f1'),
    'camvid.scratch.imagesize473.densenet30k36':
        ('camvid.scratch.imagesize473.dense30k36.scale320', '6213f7d597ebb58a'),
    'camvid.scratch.imagesize321.densenet30k36':
        ('camvid.scratch.imagesize321.dense30k36.scale320', '0c115ae5fabdb28c'),
    'camvid.scratch.imagesize321.stem.nocompression.nopooling.dense121k60':
        ('camvid.scratch.imagesize321.stem.nocompression.nopooling.dense121k60.scale320', '0a514f15fecc425e'),
    'camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k36':
        ('camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k36.scale320', '9e53fbc4874db6cd'),
    'camvid.scratch.imagesize321.stem.compression.nopooling.dense30k36':
        ('camvid.scratch.imagesize321.stem.nopooling.dense30k36.scale320', 'd62da7e7d3a9dcc6'),
    'camvid.scratch.imagesize321.toy.newbaseline.stem.nocompression.nopooling.dense30k48.newdid6.scale640':
        ('camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.scale640', '663584ff45670f67'),
    'camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.3gpu':
        ('camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.scale320.3gpu', '0597bebfc0198470'),
    'camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.scale320.lrx1.4gpu':
        ('camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.scale320.lrsteps5-8.4gpu', '1684fc576625283e'),
    'camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.4gpu.2ndtime.regularization2e-4.scale640':
        ('camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.scale640.regularization2e-4.4gpu.2ndtime', 'cdd405a1b348f89d'),
    'camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.3gpu.2ndtime.regularization2e-4':
        ('camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.scale320.regularization2e-4.3gpu.2ndtime', 'bf7fc018220e0a02'),
    'deeplabv2.camvid.imagesize321.res100.noscratch.on_trainval.scale160':
        ('camvid.noscratch.imagesize321.resnet101.scale160', '82986cb27472a139'),
    'deeplabv2.camvid.imagesize321.res100.scratch.on_trainval.scale32':
        ('camvid.scratch.imagesize321.resnet101.scale32', '0c78cf20466a9475'),
    'deeplabv2.camvid.imagesize321.res100.scratch.on_trainval.scale160':
        ('camvid.scratch.imagesize321.resnet101.scale160', '5b2febf7bfa0b285'),
    'deeplabv2.aerial.imagesize473.scratch':
        ('aerial.scratch.imagesize473.resnet101.scale32', '2e1f54268b26a10a'),
    'deeplabv2.aerial.imagesize473.res50.scratch':
        ('aerial.scratch.imagesize473.resnet50.scale32', '616c88a232873d6c'),
    'camvid.aerial.imagesize473.stem.nocompression.nopooling.dense30k48':
        ('aerial.scratch.imagesize473.stem.nocompression.nopooling.dense30k48.scale32', '69eda5fb64c3d38c'),
    'camvid.aerial.imagesize473.stem.nocompression.nopooling.dense30k48.scale50':
        ('aerial.scratch.imagesize473.stem.nocompression.nopooling.dense30k48.scale50', '7f5f25ccecbb1d12'),
    'camvid.aerial.imagesize473.stem.nocompression.nopooling.dense30k48.newdid4':
        ('aerial.scratch.imagesize473.stem.nocompression.nopooling.dense30k48.newdid4.scale32', 'c2ca8321eedf1944'),
    'camvid.aerial.imagesize473.stem.nocompression.nopooling.dense30k48.newdid4_1':
        ('aerial.scratch.imagesize473.stem.nocompression.nopooling.dense30k48.newdid4_1.scale32', '9003ef2fac786389'),
    'camvid.aerial.imagesize473.stem.nocompression.nopooling.dense30k48.newdid6.4gpu_bugfix':
        ('aerial.scratch.imagesize473.stem.nocompression.nopooling.dense30k48.newdid6.scale32.4gpu.bugfix', '75c7b5e81e3185b5'),
    'camvid.aerial.imagesize473.stem.nocompression.nopooling.dense30k48.newdid6':
        ('aerial.scratch.imagesize473.stem.nocompression.nopooling.dense30k48.newdid6.scale32', '845409fb8ad1f5b8'),
    'cs.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.fixDim(8)':
        ('cityscapes.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.scale8.fixDim', 'b522ebf927df19cc'),
    'cs.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.fixDim.sublinear':
        ('cityscapes.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.scale8.sublinear.fixDim', '53d1c555ba358845'),
    'cs.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.fixDim.scale12':
        ('cityscapes.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.scale12.fixDim', '29cad83bda97b97b'),
    'cs.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.fixDim.scale16':
        ('cityscapes.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.scale16.fixDim', '5dc891252280032a'),
    'cs.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.fixDim.scale20':
        ('cityscapes.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.scale20.fixDim', 'b7cc860177b4e694'),
    'cs.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.fixDim.scale16.stride8.imgsize800':
        ('cityscapes.scratch.imagesize800.stem.nocompression.nopooling.dense30k48.newdid6.stride8.scale16.fixDim', '0bfd560a3d4355e0'),
    'cs.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.fixDim.scale8.stride8.imgsize1024':
        ('cityscapes.scratch.imagesize1024.stem.nocompression.nopooling.dense30k48.newdid6.stride8.scale8.fixDim', '7d3be0178806134b'),
    'camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.scale1000.fixDim':
        ('camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.scale1000.fixDim', 'abed88516f6a8cae'),
    'camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.scale800.fixDim.sublinear':
        ('camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.scale800.sublinear.fixDim', 'c936fd4d00f65947'),
    'camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.stride8':
        ('camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.stride8.scale320', '667b9c5c224184b2'),
    'camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.stride8.scale480':
        ('camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.stride8.scale480', '87b21043060ebc63'),
    'deeplabv2.camvid..imagesize321.toy.newbaseline.stem.nocompression.nopooling.dense30k48.newdid6.sublinear.lr1p5':
        ('camvid.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.scale32.lr1p5e-3.sublinear', '0e6d104c50f5c372'),
    'pascal.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.fixDim.scale4':
        ('voc.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.scale4.fixDim', '006ff27310eae6a4'),
    'pascal.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.fixDim.scale8':
        ('voc.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.scale8.fixDim', '648d2a336d4f64b8'),
    'pascal.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.fixDim.scale10':
        ('voc.scratch.imagesize321.stem.nocompression.nopooling.dense30k48.newdid6.scale10.fixDim', 'a68f761fb4834773'),
    'slim.deeplabv2.voc.imagesize473':
        ('voc.imagenet.imagesize473.resnet101.slim.scale8', 'c5af017e7f1be55c'),
    'deeplabv3.voc.imagesize473':
        ('voc.imagenet.imagesize473.resnet101.deeplabv3.scale8', 'c720d062af0f88ee'),
    'deeplabv3.voc.imagesize473.scale12':
        ('voc.imagenet.imagesize473.resnet101.deeplabv3.scale12', 'a258d765d0bbc844'),
    'deeplabv3.voc.imagesize513.scale4.lrmultfix.noASPP.fortune':
        ('voc.imagenet.imagesize513.resnet101.deeplabv3.noASPP.scale4.lrmultfix.fortune', '5768224a6846801e'),
    'deeplabv3.voc.imagesize513.scale4.lrmultfix.fortune':
        ('voc.imagenet.imagesize513.resnet101.deeplabv3.scale4.lrmultfix.fortune', 'b12a7e51251b41cf'),
    'deeplabv3.voc.imagesize513.scale4.lrmultfix.tune':
        ('voc.imagenet.imagesize513.resnet101.deeplabv3.scale4.lrmultfix.tune', '5d45389bc779526f'),
    'deeplabv3.voc.imagesize513.scale4.lrmultfix.tune.betagammafix':
        ('voc.imagenet.imagesize513.resnet101.deeplabv3.scale4.lrmultfix.tune.betagammafix', 'b1ebdafb12cea3d9'),
    'slim.deeplabv2.dilation6.voc.imagesize473':
        ('voc.imagenet.imagesize473.resnet101.slim.dilation6.scale8', 'd60b30be978d10ec'),
    'deeplabv2.cs.imagesize672.scale18':
        ('cityscapes.imagenet.imagesize672.resnet101.scale18', '89e4a7da23fcdcc9'),
}

#: Issue 12.3: the old ResNet CamVid runs (``deeplabv2.camvid...`` without realtest/on_trainval) trained
#: on `train` and evaluated on `val` (TOKENS.md 1b, the on_trainval row); the old codec said
#: train_val -> test. Their names now say so, and their hashes change with the config.
OLD_CAMVID_PROTOCOL = ".dataset-eval_split-val.dataset-train_split-train"
CHANGED = {
    "deeplabv2.camvid.imagesize473.scratch_acturally321": "camvid.scratch.imagesize321.resnet101.scale320",
    "deeplabv2.camvid.imagesize473.scratch": "camvid.scratch.imagesize473.resnet101.scale320",
    "deeplabv2.camvid.imagesize473.res50.scratch": "camvid.scratch.imagesize473.resnet50.scale320",
    "deeplabv2.camvid.imagesize473.toy.resnet101.scratch": "camvid.scratch.imagesize473.resnet101.scale32",
    "deeplabv2.camvid.imagesize321.toy.resnet50.scratch": "camvid.scratch.imagesize321.resnet50.scale32",
}


def test_every_notes_name_is_recorded():
    assert set(notes_names()) == set(BEFORE)


@pytest.mark.parametrize("name", sorted(set(BEFORE) - set(CHANGED)))
def test_notes_name_keeps_its_canonical_name_and_hash(name: str):
    assert naming.decode(name) == BEFORE[name]


@pytest.mark.parametrize("name", sorted(CHANGED))
def test_old_resnet_camvid_names_train_on_train_and_evaluate_on_val(name: str):
    canonical, config_hash = naming.decode(name)
    assert canonical == CHANGED[name] + OLD_CAMVID_PROTOCOL
    assert config_hash != BEFORE[name][1]
    dataset = naming.semantic(name)["dataset"]
    assert (dataset["train_split"], dataset["eval_split"]) == ("train", "val")
    assert naming.decode(canonical) == (canonical, config_hash)
