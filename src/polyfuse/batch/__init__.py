"""Distributed batch inference: predictions, embeddings and vector indexes of whole manifests.

A job plans the manifest's rows into numbered Parquet parts (`parts`), runs the stages
(`stages`: preprocessing, one encoder stage per modality, fusion + heads) over the rows of
the parts still missing, in process or on Ray Data (`runners`), and writes each part when
its last row arrives, so a rerun resumes (`jobs`). Ray is imported only by the Ray runner.
"""
