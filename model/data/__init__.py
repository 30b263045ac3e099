"""Training and evaluation data: synthetic announcement cards, real photographs, dataset builds.

Everything here is generated locally or read from files that system packages install; nothing is
downloaded at run time. `folder.iter_image_files` is the small stable API the model code reads
datasets through.
"""
