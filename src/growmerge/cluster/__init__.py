"""Running a study on a Slurm cluster: where jobs run (``spec``) and how they are submitted (``slurm``).

``spec`` is light (pydantic only); ``slurm`` imports submitit when it submits.
"""

from growmerge.cluster.spec import ClusterSpec, Resources, load_cluster

__all__ = ["ClusterSpec", "Resources", "load_cluster"]
