"""The dev measure the teacher climbs: dev batches (``batches``), sampled candidate translations
(``candidates``), sentence and corpus BLEU (``bleu``), the smoothed, differentiable expected BLEU
(``expected_bleu``) and the greedy-BLEU features of s_t (``measure``)."""
