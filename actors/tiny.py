"""A FLUX.1 Kontext pipeline with tiny random weights, built in memory.

It uses the same diffusers and transformers classes as the real model, so
every code path from the prompt to the PNG runs, without downloading
anything. Its images are noise. Tests and the offline demo use it.

The component configs are tied together by these rules:

- `transformer.in_channels == 4 * vae.latent_channels`, because the
  transformer packs 2x2 latent patches into one token.
- `transformer.joint_attention_dim` is the T5 encoder's `d_model` and
  `transformer.pooled_projection_dim` is the CLIP encoder's `hidden_size`.
- `sum(axes_dims_rope) == attention_head_dim`, each axis even.
- Four VAE blocks give a scale factor of 8 as in the real model, so image
  sides must be multiples of 16.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    FlowMatchEulerDiscreteScheduler,
    FluxKontextPipeline,
    FluxTransformer2DModel,
)
from tokenizers.pre_tokenizers import ByteLevel
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
)

# Width of both text encoders' outputs, so the transformer can take either.
TEXT_HIDDEN_SIZE = 32
LATENT_CHANNELS = 4
CLIP_MAX_LENGTH = 77

_CLIP_BOS = "<|startoftext|>"
_CLIP_EOS = "<|endoftext|>"


def _build_clip_tokenizer() -> CLIPTokenizer:
    # A byte-level vocabulary with every byte alone and as a word end (`</w>`)
    # encodes any text without unknown tokens, with no merges needed.
    byte_symbols = sorted(ByteLevel.alphabet())
    vocab: dict[str, int] = {}
    for symbol in byte_symbols:
        vocab[symbol] = len(vocab)
    for symbol in byte_symbols:
        vocab[symbol + "</w>"] = len(vocab)
    vocab[_CLIP_BOS] = len(vocab)
    vocab[_CLIP_EOS] = len(vocab)
    # The pipeline pads CLIP input to model_max_length. Without a value,
    # padding overflows the text encoder's position table.
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=CLIP_MAX_LENGTH)


def _build_t5_tokenizer() -> T5Tokenizer:
    # T5's fixed ids come first (<pad>=0, </s>=1, <unk>=2). Characters outside
    # printable ASCII encode as <unk>, which is still a valid input.
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(chr(code), -3.0) for code in range(33, 127)]
    return T5Tokenizer(vocab=pieces, extra_ids=0)


def _build_text_encoders(
    clip_tokenizer: CLIPTokenizer, t5_tokenizer: T5Tokenizer
) -> tuple[CLIPTextModel, T5EncoderModel]:
    clip = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(clip_tokenizer),
            hidden_size=TEXT_HIDDEN_SIZE,
            intermediate_size=37,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=CLIP_MAX_LENGTH,
            projection_dim=TEXT_HIDDEN_SIZE,
            bos_token_id=clip_tokenizer.bos_token_id,
            # CLIP pools the hidden state at the first end-of-text token, found by this id.
            eos_token_id=clip_tokenizer.eos_token_id,
            pad_token_id=clip_tokenizer.pad_token_id,
        )
    )
    t5 = T5EncoderModel(
        T5Config(
            vocab_size=len(t5_tokenizer),
            d_model=TEXT_HIDDEN_SIZE,
            d_kv=8,
            d_ff=37,
            num_layers=1,
            num_heads=4,
            pad_token_id=t5_tokenizer.pad_token_id,
            eos_token_id=t5_tokenizer.eos_token_id,
        )
    )
    return clip, t5


def _build_transformer() -> FluxTransformer2DModel:
    return FluxTransformer2DModel(
        patch_size=1,
        in_channels=4 * LATENT_CHANNELS,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=TEXT_HIDDEN_SIZE,
        pooled_projection_dim=TEXT_HIDDEN_SIZE,
        # Kontext [dev] is guidance-distilled, so the guidance scale is a model
        # input instead of classifier-free guidance.
        guidance_embeds=True,
        axes_dims_rope=(4, 4, 8),
    )


def _build_vae() -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=4,
        sample_size=32,
        # The FLUX.1 VAE's latent normalisation constants.
        scaling_factor=0.3611,
        shift_factor=0.1159,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )


def _build_scheduler() -> FlowMatchEulerDiscreteScheduler:
    # The scheduler config that FLUX.1 Kontext [dev] ships with.
    return FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000,
        shift=3.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    )


def build_tiny_kontext_pipeline(seed: int = 0) -> FluxKontextPipeline:
    """Build a float32 CPU Kontext pipeline whose random weights depend only on `seed`.

    The global torch random state is left as it was.
    """
    clip_tokenizer = _build_clip_tokenizer()
    t5_tokenizer = _build_t5_tokenizer()

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        clip, t5 = _build_text_encoders(clip_tokenizer, t5_tokenizer)
        transformer = _build_transformer()
        vae = _build_vae()

    # Freshly built modules are in training mode, where T5's dropout would make
    # outputs depend on the global random state. from_pretrained sets eval too.
    for module in (clip, t5, transformer, vae):
        module.eval()
        module.requires_grad_(False)

    return FluxKontextPipeline(
        scheduler=_build_scheduler(),
        vae=vae,
        text_encoder=clip,
        tokenizer=clip_tokenizer,
        text_encoder_2=t5,
        tokenizer_2=t5_tokenizer,
        transformer=transformer,
    )


def save_tiny_kontext_pipeline(path: str | Path, seed: int = 0) -> Path:
    """Write a tiny pipeline to `path` in the layout `from_pretrained` reads (under 1 MB)."""
    path = Path(path)
    build_tiny_kontext_pipeline(seed).save_pretrained(path)
    return path
