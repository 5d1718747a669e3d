"""Pruning by embeddings: SemDeDup and D4 (SemDeDup, then SSL prototypes). ALGORITHMS.md 1.

Modules: `embed` (neural embedders and the embedder registry), `light` (hashed TF-IDF + SVD, no
torch), `kmeans` (spherical k-means, exact assignment), `semdedup` (the within-cluster kernel and
the `semdedup` stage), `prototypes` (distance-to-centroid ranks), `phases` (the prepare() phases
both stages share), `d4` (the `d4` stage). Nothing here imports torch until an embedder is built.
"""
