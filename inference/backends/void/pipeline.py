"""VOID inference on diffusers components, in the diffusers pipeline style.

`VoidPipeline` composes CogVideoX-Fun's pieces (T5 text encoder, `AutoencoderKLCogVideoX`,
`CogVideoXTransformer3DModel` with 48 input channels, `DDIMScheduler`) the way the reference VOID
inference does (Netflix/void-model, CogVideoXFunInpaintPipeline with use_trimask=True,
use_vae_mask=True, stack_mask=False, zero_out_mask_region=False):

1. quadmask → quantised, inverted, 0–1 → re-quantised to three levels (trimask);
2. the clip is padded with time-mirrored copies to 4k+1 frames (k odd), at least one window;
3. conditioning (`prepare_inpaint_latents`): `1 − mask` tiled to RGB and the unmasked video, both
   VAE-encoded (posterior mode × scaling factor), concatenated to 32 channels;
4. DDIM from the base scheduler config; at every step each temporal window is denoised on its own
   and the windows are blended with linear ramps over their overlap;
5. the latents are decoded to 0–1 video in the reference's frame order (`decode`: the first latent
   frame alone, then pairs) and the padding is dropped.

The transformer: the reference's transformer takes `inpaint_latents` and concatenates them after
the 16 noisy channels before patch embedding, which is the first thing its forward does with them.
Diffusers' `CogVideoXTransformer3DModel` built with `in_channels=48` has the same patch embedding,
so the pipeline does that concatenation itself and no model subclass is needed. The reference's
`use_vae_mask` only widens the input to 48 channels (16 noisy + 16 VAE-encoded mask + 16 video);
see `loading.build_transformer`.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.models.embeddings import get_3d_rotary_pos_embed
from diffusers.utils.torch_utils import randn_tensor
from voidlink.inference.backends import base
from voidlink.inference.backends.void import decode, helpers

NEGATIVE_PROMPT = (
    "The video is not of a high quality, it has a low resolution. Watermark present in each frame. "
    "The background is solid. Strange body and strange trajectory. Distortion."
)
NOISE_AUG_STRENGTH = 0.0563
MAX_SEQUENCE_LENGTH = 226

# (step index, steps, window index, windows) after each window of each step.
StepCallback = Callable[[int, int, int, int], None]


@dataclass
class VoidPipelineOutput:
    frames: np.ndarray  # (F, H, W, 3) float32 in 0–1, the clip's own frames (padding dropped)
    latents: Optional[torch.Tensor] = None  # (B, F', 16, h, w), final latents before decoding
    notes: list[str] = field(default_factory=list)


@dataclass
class InpaintLatents:
    mask_latents: torch.Tensor  # (B, F', 16, h, w)
    video_latents: torch.Tensor  # (B, F', 16, h, w)
    inpaint_latents: torch.Tensor  # (B, F', 32, h, w): mask first, then video, as the reference


def condition_from_quadmask(quadmask: np.ndarray, use_trimask: bool = True) -> np.ndarray:
    """(F, H, W) uint8 quadmask → (F, H, W) float32 mask condition (1 remove, 0 keep).

    With `use_trimask` (pass 1) affected pixels are 127/255; without it (the reference's pass 2) the
    condition is binarised at 0.5, so affected pixels (128/255) are "remove" too.
    """
    condition = helpers.quadmask_to_condition(quadmask)
    if use_trimask:
        return helpers.trimask(condition)
    return (condition > 0.5).astype(np.float32)


def _encode(vae: Any, pixels: torch.Tensor) -> torch.Tensor:
    # One clip at a time, posterior mode × scaling factor: the reference's encode for both inputs.
    out = [vae.encode(pixels[i : i + 1]).latent_dist.mode() for i in range(pixels.shape[0])]
    return torch.cat(out, dim=0) * vae.config.scaling_factor


@torch.no_grad()
def prepare_inpaint_latents(
    vae: Any,
    video: torch.Tensor,
    mask_condition: torch.Tensor,
    *,
    add_noise: bool = False,
    noise_aug_strength: float = NOISE_AUG_STRENGTH,
    generator: Optional[torch.Generator] = None,
    video_noise: Optional[torch.Tensor] = None,
) -> InpaintLatents:
    """The conditioning step, on its own so its numbers can be compared with the reference's.

    video: (B, 3, F, H, W) in 0–1; mask_condition: (B, 1, F, H, W) after the trimask (1 remove).
    With `add_noise` (the transformer config's `add_noise_in_inpaint_model`), Gaussian noise of
    std `noise_aug_strength` is added to the video in −1…1 except where it is exactly −1; pass
    `video_noise` (unit std, the video's shape) to reproduce another run's draw.
    """
    device = vae.device
    dtype = vae.dtype
    mask = mask_condition.to(device=device, dtype=torch.float32)
    # The mask goes to the VAE as it is, 0–1 (not −1…1), tiled to three channels and inverted.
    mask_pixels = (1.0 - torch.tile(mask, (1, 3, 1, 1, 1))).to(dtype)
    mask_latents = _encode(vae, mask_pixels)

    pixels = video.to(device=device, dtype=torch.float32) * 2.0 - 1.0
    if add_noise:
        if video_noise is None:
            video_noise = torch.randn(
                pixels.shape,
                generator=generator,
                device=generator.device if generator is not None else device,
                dtype=torch.float32,
            )
        noise = video_noise.to(device=device, dtype=torch.float32) * noise_aug_strength
        pixels = pixels + torch.where(pixels == -1, torch.zeros_like(noise), noise)
    video_latents = _encode(vae, pixels.to(dtype))

    mask_latents = mask_latents.permute(0, 2, 1, 3, 4)
    video_latents = video_latents.permute(0, 2, 1, 3, 4)
    return InpaintLatents(mask_latents, video_latents, torch.cat([mask_latents, video_latents], dim=2))


class VoidPipeline(DiffusionPipeline):
    """Removal of an object and what it does to the scene, conditioned on a quadmask."""

    model_cpu_offload_seq = "text_encoder->transformer->vae"
    _optional_components = ["tokenizer", "text_encoder"]

    def __init__(self, tokenizer: Any, text_encoder: Any, vae: Any, transformer: Any, scheduler: Any) -> None:
        super().__init__()
        self.register_modules(
            tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer, scheduler=scheduler
        )
        self.vae_scale_factor_spatial = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.vae_scale_factor_temporal = self.vae.config.temporal_compression_ratio
        # Set from the base transformer config.json by the loader (diffusers' model drops that key).
        self.add_noise_in_inpaint_model = False

    # -- text ------------------------------------------------------------------------------------------

    def _t5_embeds(
        self, prompts: list[str], max_sequence_length: int, device: torch.device, notes: list[str]
    ) -> torch.Tensor:
        if self.tokenizer is None or self.text_encoder is None:
            raise ValueError("this pipeline has no text encoder: pass prompt_embeds and negative_prompt_embeds")
        inputs = self.tokenizer(
            prompts,
            padding="max_length",
            max_length=max_sequence_length,
            truncation=True,
            add_special_tokens=True,
            return_tensors="pt",
        )
        ids = inputs.input_ids
        full = self.tokenizer(prompts, padding="longest", return_tensors="pt").input_ids
        if full.shape[-1] > ids.shape[-1] and not torch.equal(ids, full[:, : ids.shape[-1]]):
            dropped = full.shape[-1] - max_sequence_length
            tail = ""
            if hasattr(self.tokenizer, "batch_decode"):
                tail = self.tokenizer.batch_decode(full[:, max_sequence_length - 1 : -1])[0]
            message = f"the prompt is longer than T5 reads ({max_sequence_length} tokens); {dropped} were dropped"
            notes.append(f"{message}: {tail!r}" if tail else message)
        embeds = self.text_encoder(ids.to(device))[0]
        return embeds.to(device=device, dtype=self.transformer.dtype)

    def encode_prompt(
        self,
        prompt: str,
        negative_prompt: str,
        do_classifier_free_guidance: bool,
        max_sequence_length: int = MAX_SEQUENCE_LENGTH,
        device: Optional[torch.device] = None,
        notes: Optional[list[str]] = None,
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        device = device or self._execution_device
        notes = notes if notes is not None else []
        embeds = self._t5_embeds([prompt], max_sequence_length, device, notes)
        negative = None
        if do_classifier_free_guidance:
            negative = self._t5_embeds([negative_prompt or ""], max_sequence_length, device, [])
        return embeds, negative

    # -- helpers ---------------------------------------------------------------------------------------

    def _rotary(self, height: int, width: int, latent_frames: int, device: torch.device) -> Optional[tuple]:
        config = self.transformer.config
        if not config.use_rotary_positional_embeddings:
            return None
        p = config.patch_size
        grid = (height // (self.vae_scale_factor_spatial * p), width // (self.vae_scale_factor_spatial * p))
        # CogVideoX 1.5 (patch_size_t set): "slice" grids over the base sample size, as the reference.
        p_t = config.patch_size_t or 1
        most = (config.sample_height // p, config.sample_width // p)
        if grid[0] > most[0] or grid[1] > most[1]:
            limit = (most[1] * p * self.vae_scale_factor_spatial, most[0] * p * self.vae_scale_factor_spatial)
            raise ValueError(
                f"{width}x{height} is larger than the transformer's positional grid allows "
                f"({limit[0]}x{limit[1]}, from sample_width/sample_height in its config)"
            )
        return get_3d_rotary_pos_embed(
            embed_dim=config.attention_head_dim,
            crops_coords=None,
            grid_size=grid,
            temporal_size=(latent_frames + p_t - 1) // p_t,
            grid_type="slice",
            max_size=most,
            device=device,
        )

    def _step_kwargs(self, scheduler: Any, generator: Optional[torch.Generator], eta: float) -> dict:
        params = set(inspect.signature(scheduler.step).parameters)
        kwargs: dict = {}
        if "eta" in params:
            kwargs["eta"] = eta
        if "generator" in params:
            kwargs["generator"] = generator
        return kwargs

    def window_latent_frames(self, temporal_window_size: int) -> int:
        frames = helpers.latent_length(temporal_window_size)
        p_t = self.transformer.config.patch_size_t
        if p_t and frames % p_t:
            frames -= frames % p_t
        return frames

    # -- call ------------------------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(
        self,
        video: Union[np.ndarray, torch.Tensor],
        quadmask: Union[np.ndarray, torch.Tensor],
        prompt: str = "",
        negative_prompt: Optional[str] = NEGATIVE_PROMPT,
        num_inference_steps: int = 50,
        guidance_scale: float = 1.0,
        eta: float = 0.0,
        generator: Optional[torch.Generator] = None,
        latents: Optional[torch.Tensor] = None,
        prompt_embeds: Optional[torch.Tensor] = None,
        negative_prompt_embeds: Optional[torch.Tensor] = None,
        temporal_window_size: int = helpers.TEMPORAL_WINDOW,
        temporal_multidiffusion_stride: int = helpers.MULTIDIFFUSION_STRIDE,
        max_frames: int = helpers.MAX_FRAMES,
        noise_aug_strength: float = NOISE_AUG_STRENGTH,
        max_sequence_length: int = MAX_SEQUENCE_LENGTH,
        callback: Optional[StepCallback] = None,
        cancelled: Optional[Callable[[], bool]] = None,
        output_type: str = "np",
        use_trimask: bool = True,
        scheduler: Optional[Any] = None,
    ) -> VoidPipelineOutput:
        """Remove what the quadmask marks from `video`.

        video: (F, H, W, 3) float 0–1; quadmask: (F, H, W) uint8 (0 object, 63 overlap, 127 affected,
        255 keep). H and W must be multiples of 16 (8× VAE, 2× patch). `latents`: explicit initial
        noise of shape (1, F', 16, H/8, W/8) for the padded clip (see `latent_shape`), as in diffusers.
        `use_trimask=False` and a `scheduler` of its own are what the reference's pass 2 uses (a
        binarised mask, CogVideoXDDIMScheduler); the pipeline's scheduler is left untouched.
        Raises `base.Cancelled` between steps when `cancelled()` turns true.
        """
        scheduler = scheduler if scheduler is not None else self.scheduler
        notes: list[str] = []
        video_np = np.asarray(video.cpu() if isinstance(video, torch.Tensor) else video, dtype=np.float32)
        mask_np = np.asarray(quadmask.cpu() if isinstance(quadmask, torch.Tensor) else quadmask)
        if video_np.ndim != 4 or video_np.shape[-1] != 3:
            raise ValueError(f"video must be (F, H, W, 3), got {video_np.shape}")
        if mask_np.shape != video_np.shape[:3]:
            raise ValueError(f"quadmask {mask_np.shape} does not match the video {video_np.shape[:3]}")
        length, height, width = video_np.shape[:3]
        unit = self.vae_scale_factor_spatial * self.transformer.config.patch_size
        if height % unit or width % unit:
            raise ValueError(f"height and width must be multiples of {unit}, got {height}×{width}")
        if length > max_frames:
            raise ValueError(f"{length} frames exceed the {max_frames} one call denoises; split the shot first")
        device = self._execution_device
        do_cfg = guidance_scale > 1.0

        # 1. Text.
        if prompt_embeds is None:
            prompt_embeds, negative_prompt_embeds = self.encode_prompt(
                prompt, negative_prompt or "", do_cfg, max_sequence_length, device, notes
            )
        elif do_cfg and negative_prompt_embeds is None:
            raise ValueError("guidance_scale > 1 needs negative_prompt_embeds beside prompt_embeds")
        dtype = self.transformer.dtype
        prompt_embeds = prompt_embeds.to(device=device, dtype=dtype)
        if do_cfg:
            prompt_embeds = torch.cat([negative_prompt_embeds.to(device=device, dtype=dtype), prompt_embeds], dim=0)

        # 2. Temporal padding (mirrored copies) to the 4k+1, k odd, length.
        target = helpers.padded_length(length, min_length=temporal_window_size, max_length=max_frames)
        order = helpers.padding_indices(length, target)
        condition = condition_from_quadmask(mask_np[order], use_trimask)
        video_t = torch.from_numpy(np.ascontiguousarray(video_np[order])).permute(3, 0, 1, 2)[None]
        mask_t = torch.from_numpy(condition)[None, None]

        # 3. Timesteps and initial noise. The noise is the seeded generator's first draw, as in the
        # reference, so a given seed starts from the reference's noise.
        scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = scheduler.timesteps
        shape = self.latent_shape(length, height, width, temporal_window_size, max_frames)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
        latents = latents.to(device=device, dtype=dtype) * scheduler.init_noise_sigma

        # 4. Conditioning. The video's noise augmentation is drawn after the initial noise, from the
        # same generator: the reference draws it from torch's global generator, unseeded, so its own
        # runs differ there; ours stay reproducible for a given seed.
        cond = prepare_inpaint_latents(
            self.vae,
            video_t,
            mask_t,
            add_noise=self.add_noise_in_inpaint_model,
            noise_aug_strength=noise_aug_strength,
            generator=generator,
        )
        inpaint = cond.inpaint_latents.to(device=device, dtype=dtype)
        if inpaint.shape[1] != shape[1]:
            raise RuntimeError(f"the VAE gave {inpaint.shape[1]} latent frames, expected {shape[1]}")
        if do_cfg:
            inpaint = torch.cat([inpaint] * 2)
        step_kwargs = self._step_kwargs(scheduler, generator, eta)

        window = self.window_latent_frames(temporal_window_size)
        overlap = temporal_multidiffusion_stride // self.vae_scale_factor_temporal
        total = latents.shape[1]
        spans = helpers.window_spans(total, window, overlap)
        rotary_cache: dict[int, Optional[tuple]] = {}

        def denoise(x: torch.Tensor, inpaint_x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            frames = x.shape[1]
            if frames not in rotary_cache:
                rotary_cache[frames] = self._rotary(height, width, frames, device)
            model_input = torch.cat([x] * 2) if do_cfg else x
            model_input = scheduler.scale_model_input(model_input, t)
            # The reference transformer's first step: noisy latents, then the 32 inpaint channels.
            model_input = torch.cat([model_input, inpaint_x], dim=2)
            noise_pred = self.transformer(
                hidden_states=model_input,
                encoder_hidden_states=prompt_embeds,
                timestep=t.expand(model_input.shape[0]),
                image_rotary_emb=rotary_cache[frames],
                return_dict=False,
            )[0].float()
            if do_cfg:
                uncond, text = noise_pred.chunk(2)
                noise_pred = uncond + guidance_scale * (text - uncond)
            return scheduler.step(noise_pred, t, x, **step_kwargs, return_dict=False)[0].to(dtype)

        # 5. Denoising with temporal multidiffusion at every step.
        for i, t in enumerate(timesteps):
            if cancelled is not None and cancelled():
                raise base.Cancelled()
            if len(spans) == 1:
                latents = denoise(latents, inpaint, t)
                if callback is not None:
                    callback(i, len(timesteps), 0, 1)
                continue
            canvas = torch.zeros_like(latents, dtype=torch.float32)
            weight_sum = torch.zeros(1, total, 1, 1, 1, device=device, dtype=torch.float32)
            for k, (start, end) in enumerate(spans):
                out = denoise(latents[:, start:end], inpaint[:, start:end], t)
                # Weights in the latents' dtype, as the reference builds them.
                w = torch.from_numpy(helpers.window_weights((start, end), total, overlap))
                w = w.to(device=device, dtype=latents.dtype).reshape(1, end - start, 1, 1, 1)
                canvas[:, start:end] += out * w
                weight_sum[:, start:end] += w
                if callback is not None:
                    callback(i, len(timesteps), k, len(spans))
                if cancelled is not None and cancelled() and k + 1 < len(spans):
                    raise base.Cancelled()
            latents = (canvas / weight_sum).to(dtype)

        if output_type == "latent":
            self.maybe_free_model_hooks()
            return VoidPipelineOutput(frames=np.zeros((0,), np.float32), latents=latents, notes=notes)

        # 6. Decode (frame k of the output is frame k of the padded clip); drop the padding.
        frames = self.decode_latents(latents)
        if len(frames) != target:
            raise RuntimeError(
                f"the VAE decoded {len(frames)} frames from {latents.shape[1]} latents, expected {target}"
            )
        frames = frames[:length]
        self.maybe_free_model_hooks()
        return VoidPipelineOutput(frames=frames, latents=latents, notes=notes)

    def latent_shape(
        self,
        length: int,
        height: int,
        width: int,
        temporal_window_size: int = helpers.TEMPORAL_WINDOW,
        max_frames: int = helpers.MAX_FRAMES,
    ) -> tuple[int, int, int, int, int]:
        """Shape of the initial noise for a clip of `length` frames (after temporal padding)."""
        target = helpers.padded_length(length, min_length=temporal_window_size, max_length=max_frames)
        return (
            1,
            helpers.latent_length(target),
            self.vae.config.latent_channels,
            height // self.vae_scale_factor_spatial,
            width // self.vae_scale_factor_spatial,
        )

    def decode_latents(self, latents: torch.Tensor) -> np.ndarray:
        """(B, F', 16, h, w) latents → (1 + 4(F'−1), H, W, 3) frames in 0–1, frame k being input frame k."""
        latents = latents.permute(0, 2, 1, 3, 4).to(self.vae.dtype) / self.vae.config.scaling_factor
        frames = decode.decode(self.vae, latents)
        frames = (frames / 2 + 0.5).clamp(0, 1)
        return frames[0].permute(1, 2, 3, 0).float().cpu().numpy()
