"""Analysis: read a run back from its TensorBoard logs (``runs``), compute the numbers (``summaries``), write the
diagnosis (``report``) and the plots (``plots``). Imports nothing of the loop, only ``layout``'s names."""
