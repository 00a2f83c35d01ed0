"""A named small student for the demo, tests and CPU benchmarks."""

from fairseq.models import register_model_architecture
from fairseq.models.transformer.transformer_legacy import tiny_architecture


@register_model_architecture("transformer", "transformer_l2t_toy")
def toy_architecture(args):
    """fairseq's ``transformer_tiny`` (2+2 layers, 64 dims) with 128-dim FFNs, 4 heads, tied output embedding."""
    args.encoder_ffn_embed_dim = getattr(args, "encoder_ffn_embed_dim", 128)
    args.encoder_attention_heads = getattr(args, "encoder_attention_heads", 4)
    args.decoder_attention_heads = getattr(args, "decoder_attention_heads", 4)
    args.share_decoder_input_output_embed = getattr(args, "share_decoder_input_output_embed", True)
    tiny_architecture(args)
