"""Reference scaling laws and their published constants (ALGORITHMS.md 4.1).

Constants are quoted from the papers as collected in ALGORITHMS.md; the ones marked [mem] there
were not re-checked against the paper text. All losses are in nats per token.
"""

from __future__ import annotations

import math

import numpy as np

# Kaplan et al. 2020 (WebText2, GPT-2 BPE, non-embedding parameters).
KAPLAN = {"alpha_N": 0.076, "N_c": 8.8e13, "alpha_D": 0.095, "D_c": 5.4e13}
# Hoffmann et al. 2022, approach 3.
CHINCHILLA = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
# Besiroglu et al. 2024 (Epoch AI) refit of the same data [mem].
CHINCHILLA_EPOCH = {"E": 1.82, "A": 482.0, "B": 2085.0, "alpha": 0.348, "beta": 0.366}
# Muennighoff et al. 2023, data-constrained scaling (C4, GPT-2 tokenizer).
MUENNIGHOFF = {
    "R_D_star": 15.387756,
    "R_N_star": 5.309743,
    "E": math.exp(0.62548),
    "A": math.exp(6.25541),
    "B": math.exp(7.30500),
    "alpha": 0.35266,
    "beta": 0.35266,
}
# Kausik, "Scaling Efficient LLMs": efficient N ~ D^gamma; v3 gamma = 0.44, v5/v6 band.
KAUSIK = {"gamma": 0.44, "band": (0.44, 0.72)}
# Heaps' law V = K D^beta for word vocabularies; the commonly quoted range for English text.
HEAPS_BETA_RANGE = (0.4, 0.6)


def kaplan_loss_d(
    D: np.ndarray | float, D_c: float = KAPLAN["D_c"], alpha_D: float = KAPLAN["alpha_D"]
) -> np.ndarray:
    """Kaplan L(D) = (D_c / D)^alpha_D: the loss of a large model trained on D tokens."""
    return (D_c / np.asarray(D, dtype=float)) ** alpha_D


def kaplan_loss_n(
    N: np.ndarray | float, N_c: float = KAPLAN["N_c"], alpha_N: float = KAPLAN["alpha_N"]
) -> np.ndarray:
    """Kaplan L(N) = (N_c / N)^alpha_N: the loss of N parameters trained to convergence."""
    return (N_c / np.asarray(N, dtype=float)) ** alpha_N


def kaplan_loss_nd(N: np.ndarray | float, D: np.ndarray | float, k: dict = KAPLAN) -> np.ndarray:
    """Kaplan L(N, D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D."""
    n, d = np.asarray(N, dtype=float), np.asarray(D, dtype=float)
    return ((k["N_c"] / n) ** (k["alpha_N"] / k["alpha_D"]) + k["D_c"] / d) ** k["alpha_D"]


def chinchilla_loss(
    N: np.ndarray | float, D: np.ndarray | float, p: dict = CHINCHILLA
) -> np.ndarray:
    """L(N, D) = E + A / N^alpha + B / D^beta."""
    n, d = np.asarray(N, dtype=float), np.asarray(D, dtype=float)
    return p["E"] + p["A"] / n ** p["alpha"] + p["B"] / d ** p["beta"]


def compute_optimal(C: float, p: dict = CHINCHILLA) -> dict[str, float]:
    """Compute-optimal split of C ~ 6 N D FLOPs: N = G (C/6)^a, D = G^-1 (C/6)^b."""
    alpha, beta = p["alpha"], p["beta"]
    g = (alpha * p["A"] / (beta * p["B"])) ** (1 / (alpha + beta))
    a, b = beta / (alpha + beta), alpha / (alpha + beta)
    return {"N": g * (C / 6) ** a, "D": (C / 6) ** b / g, "G": g, "a": a, "b": b}


def optimal_params_for_tokens(D: float, p: dict = CHINCHILLA) -> float:
    """Parameters that are compute-optimal for D tokens (inverts D_opt(C))."""
    opt = compute_optimal(6.0, p)  # G, a, b do not depend on C
    c6 = (opt["G"] * D) ** (1 / opt["b"])
    return opt["G"] * c6 ** opt["a"]


def muennighoff_effective(unique: float, total: float, r_star: float) -> float:
    """Effective amount U + U R* (1 - exp(-R / R*)), R = total / unique - 1 repetitions."""
    if unique <= 0:
        return 0.0
    reps = max(total / unique - 1.0, 0.0)
    return unique + unique * r_star * (1.0 - math.exp(-reps / r_star))


def effective_data(unique_tokens: float, epochs: float, p: dict = MUENNIGHOFF) -> float:
    """Muennighoff D' for `epochs` passes over U_D unique tokens (D = epochs * U_D)."""
    return muennighoff_effective(unique_tokens, epochs * unique_tokens, p["R_D_star"])


def effective_params(params: float, unique_tokens: float, p: dict = MUENNIGHOFF) -> float:
    """Muennighoff N' with U_N = min(N, compute-optimal parameters for U_D)."""
    u_n = min(params, optimal_params_for_tokens(unique_tokens, p))
    return muennighoff_effective(u_n, params, p["R_N_star"])
