"""The conformance kit passes models that keep the contract and names the rule a broken model breaks."""

import json

import pytest
import torch

from reverie.engine.cli import main
from reverie.engine.conformance import ConformanceError, assert_conforms, check_model
from tinyworld import KEYS_MOUSE, TinyStack, TinyWorld

FAST = dict(policies=["window", "dual"], real_time_s=0.2)


class DenoiseWrites(TinyWorld):
    def denoise(self, x, t, actions, memory):
        with torch.inference_mode():
            self._forward(x, t, actions, memory, commit=True)
        return x


class CommitsTwice(TinyWorld):
    def commit(self, x0, actions, memory):
        super().commit(x0, actions, memory)
        return super().commit(x0, actions, memory)


class WrongFrames(TinyWorld):
    def decode(self, latents):
        return super().decode(latents)[:, ::2]


class Unseeded(TinyWorld):
    def denoise(self, x, t, actions, memory):
        return (super().denoise(x, t, actions, memory) + 0.2 * torch.rand(x.shape)).clamp(-1, 1)


def _checkpoint_factory(message_names_file: bool):
    def build(checkpoint=None):
        if checkpoint is not None:
            raise ValueError(f"cannot read {checkpoint}" if message_names_file else "bad weights")
        return TinyWorld()
    return build


@pytest.mark.parametrize("model", [TinyWorld(), TinyStack(), TinyWorld(chunk_frames=3, frames_per_latent=4,
                                                                    action_space=KEYS_MOUSE)],
                         ids=["tinyworld", "frame-stacking", "keys-mouse-chunked"])
def test_models_that_keep_the_contract_conform(model):
    report = assert_conforms(model, factory=_checkpoint_factory(True), **FAST)
    statuses = {r.rule: r.status for r in report.results}
    assert statuses["checkpoint"] == "pass" and statuses["real-time"] in ("pass", "slow")
    assert all(s in ("pass", "slow") for s in statuses.values()), report.table()


@pytest.mark.parametrize("model, rule, words", [
    (DenoiseWrites(), "cache-writes", "denoise wrote the cache"),
    (CommitsTwice(), "cache-writes", "expected each of the 2 layers once"),
    (WrongFrames(), "spec-and-shapes", "decode gave"),
    (Unseeded(), "deterministic", "differ from frame 0"),
])
def test_a_broken_model_fails_with_the_rule_named(model, rule, words):
    report = check_model(model, **FAST)
    failed = {r.rule: r.detail for r in report.failed}
    assert rule in failed and words in failed[rule], report.table()
    with pytest.raises(ConformanceError, match=rule):
        assert_conforms(model, **FAST)


def test_a_checkpoint_error_must_name_the_file():
    failed = {r.rule: r.detail for r in check_model(TinyWorld(), factory=_checkpoint_factory(False), **FAST).failed}
    assert "without naming the file" in failed["checkpoint"]
    loads_anything = lambda checkpoint=None: TinyWorld()                      # noqa: E731
    failed = {r.rule: r.detail for r in check_model(TinyWorld(), factory=loads_anything, **FAST).failed}
    assert "loaded without an error" in failed["checkpoint"]


def test_the_command_prints_a_table_and_exits_by_the_result(capsys):
    assert main(["check-model", "tinyworld:build", "--policies", "window", "--seconds", "0.2", "--json"]) == 0
    out = capsys.readouterr().out
    assert "cache-writes" in out and "conforms" in out and json.loads(out.splitlines()[-1])["ok"]
    assert main(["check-model", "test_conformance:DenoiseWrites", "--policies", "window", "--seconds", "0.2"]) == 1
    out = capsys.readouterr().out
    assert "denoise wrote the cache" in out and "cache-writes" in out.splitlines()[-1]
    assert main(["check-model", "no-such-model"]) == 2


class Prompted(TinyWorld):
    """Cross-attends (here: adds the mean of) an image prompt: the start frame's latent."""

    def __init__(self, bad_prompt: bool = False):
        super().__init__()
        from dataclasses import replace

        self.spec = replace(self.spec, prompt_tokens=self.spec.tokens_per_frame)
        self.bad_prompt = bad_prompt

    def prompt(self, seed_frame):
        p = self.encode(seed_frame[None])[0]
        return p[:3] if self.bad_prompt else p

    def denoise(self, x, t, actions, memory, prompt=None):
        assert prompt is not None and prompt.shape == (self.spec.tokens_per_frame, self.spec.latent_shape[1])
        return (super().denoise(x, t, actions, memory) + 0.1 * prompt.mean(0)).clamp(-1, 1)

    def commit(self, x0, actions, memory, prompt=None):
        assert prompt is not None
        return super().commit(x0, actions, memory)


def test_a_prompted_model_gets_its_prompt_and_a_wrong_prompt_is_named():
    from reverie.engine.session import Session, default_memory_factory
    from reverie.memory import session_bytes
    from serving import seed_frame

    model = Prompted()
    assert_conforms(model, **FAST)
    s = Session(model, seed_frame((16, 16, 3)), memory_factory=default_memory_factory, policy="window",
                budget_bytes=32 * model.spec.kv_bytes_per_frame)
    s.step(1)
    s.rebuild_memory(policy="window")                     # the prompt survives a rebuild ...
    s.reset()                                             # ... and a reset
    assert s.step(1).frame.shape == (16, 16, 3)
    assert dict(session_bytes(model.spec, "window", 32 * model.spec.kv_bytes_per_frame).parts)["prompt"] == 16 * 48 * 4
    failed = {r.rule: r.detail for r in check_model(Prompted(bad_prompt=True), **FAST).failed}
    assert "prompt() gave (3, 48)" in failed["spec-and-shapes"]


def test_what_a_model_keeps_for_its_prompt_is_charged_and_checked():
    from dataclasses import replace

    from reverie.memory import session_bytes

    spec = replace(Prompted().spec, prompt_cache_bytes=1000)
    parts = dict(session_bytes(spec, "window", 32 * spec.kv_bytes_per_frame).parts)
    assert parts["prompt"] == 16 * 48 * 4 + 1000
    with pytest.raises(ValueError, match="prompt_cache_bytes"):
        replace(spec, prompt_cache_bytes=-1)
