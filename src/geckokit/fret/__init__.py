"""FRet: the two-step LLM distillation of Gecko (paper section 3.2)."""
