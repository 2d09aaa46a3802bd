"""FlashAttention-3 and -4 call styles over vflash: ``vflash.compat.fa3`` (the hopper
package's ``flash_attn_interface``) and ``vflash.compat.fa4`` (``flash_attn.cute``), so a
serving engine switches by changing one import. Neither needs torch to import."""
from . import fa3, fa4

__all__ = ["fa3", "fa4"]
