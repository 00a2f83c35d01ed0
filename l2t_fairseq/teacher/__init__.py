"""The teacher and its coefficients: the model mu_theta(s_t) -> Phi_t (``model``), the coefficients a run trains
with and the state s_t they answer (``coefficients``), one teacher step on a hypergradient (``step``) and the
teacher files ``--teacher-path`` reads (``file``)."""
