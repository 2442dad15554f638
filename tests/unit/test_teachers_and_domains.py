"""Several teachers behind one call, domain routing, and the two-domain digits."""

import torch

from distillab.data import DigitsDomainsDataModule
from distillab.models import ModelOutput
from distillab.teachers import FrozenTeacher
from distillab.teachers.ensemble import Teachers


def test_two_domain_digits_are_originals_and_rotations():
    dm = DigitsDomainsDataModule()
    dm.setup()
    plain = DigitsDomainsDataModule.__mro__[1]()
    plain.setup()
    test, original = dm.splits["test"], plain.splits["test"]
    domain = test.extras["domain"]
    assert 0.3 < domain.float().mean() < 0.7
    torch.testing.assert_close(test.inputs[domain == 0], original.inputs[domain == 0])
    torch.testing.assert_close(test.inputs[domain == 1], torch.rot90(original.inputs[domain == 1], 1, (-2, -1)))
    batch = next(iter(dm.train_dataloader()))
    assert "domain" in batch and batch["domain"].shape == batch["labels"].shape
    only_one = dm.restricted_to_domain(1)
    assert all((ds.extras["domain"] == 1).all() for ds in only_one.splits.values())
    assert len(only_one.splits["train"]) + len(dm.restricted_to_domain(0).splits["train"]) == len(dm.splits["train"])


def test_routing_gives_each_sample_its_domains_teacher(tiny_vit):
    a, b = tiny_vit(), tiny_vit(hidden_size=16)
    teachers = Teachers([FrozenTeacher(a), FrozenTeacher(b)], route_by_domain=True)
    x = torch.rand(6, 1, 8, 8)
    domain = torch.tensor([0, 1, 1, 0, 1, 0])
    batch = {"inputs": x, "labels": torch.zeros(6, dtype=torch.long), "domain": domain}
    out = teachers(batch, hidden_states=False)
    a.eval(), b.eval()
    with torch.no_grad():
        expected = torch.where(domain.unsqueeze(1) == 0, a(x).logits, b(x).logits)
    torch.testing.assert_close(out.logits, expected)
    assert teachers.top1(batch).tolist() == expected.argmax(-1).tolist()


def test_unrouted_teachers_return_one_output_each(tiny_vit):
    teachers = Teachers([FrozenTeacher(tiny_vit()), FrozenTeacher(tiny_vit())])
    outs = teachers({"inputs": torch.rand(2, 1, 8, 8), "labels": torch.zeros(2, dtype=torch.long)})
    assert isinstance(outs, list) and len(outs) == 2 and all(isinstance(o, ModelOutput) for o in outs)
    single = Teachers([FrozenTeacher(tiny_vit())])
    assert isinstance(single({"inputs": torch.rand(2, 1, 8, 8)}), ModelOutput)
