"""Readable category names from CoOp class names ("yorkshire_terrier" -> "Yorkshire Terrier").

CoOp's own renames (caltech "Faces" -> "face", SUN397 "outdoor apartment_building", UCF101
"Apply_Eye_Makeup") are already in its split files and are kept; this only fixes underscores,
spacing and case so that captions read naturally.
"""

from __future__ import annotations

# Breeds are proper names; scenes, foods, textures, objects and actions are common nouns.
TITLE_CASE_DOMAINS = ("oxford_pets",)
# Names that are model designations whose case carries meaning ("F-16A/B", "BMW M3 Coupe 2012").
KEEP_CASE_DOMAINS = ("stanford_cars", "fgvc_aircraft")


def readable_class_name(domain: str, coop_name: str) -> str:
    """The name a caption should use for a CoOp class of `domain`."""
    words = coop_name.replace("_", " ").split()
    if domain in KEEP_CASE_DOMAINS:
        return " ".join(words)
    if domain in TITLE_CASE_DOMAINS:
        return " ".join(w[:1].upper() + w[1:].lower() for w in words)
    return " ".join(words).lower()
