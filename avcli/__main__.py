"""`python -m avcli ...`, the form torchrun needs (`torchrun --nproc_per_node N -m avcli pretrain r.yaml`)."""

from avcli.cli import main

main()
