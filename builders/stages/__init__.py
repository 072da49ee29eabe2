"""The build's stages, one module each, in the order a domain goes through them:
source listing (domain) -> normalize_stage -> caption_stage -> dedup -> write_stage; options and
out_dir hold what the whole build shares, builders.pipeline runs the domains and writes the manifest."""
