"""Framework integrations: ``vflash.integrations.transformers`` registers vflash as a
Hugging Face transformers attention backend (``attn_implementation="vflash"``). Each
submodule imports its framework only when it is imported itself."""
