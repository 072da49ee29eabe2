"""The shipped meta-category maps (builders/taxonomies/) and grouping by a CLIP text encoder.

The maps are checked against the CoOp class lists in coop_class_names.py (written apart from them):
every class of every domain in exactly one group, every group with two or more members. The encoder
test builds a tiny CLIP text model whose embeddings encode meaning by construction, saves it, and
loads it through the real from_pretrained path.
"""

from __future__ import annotations

import json

import pytest

from builders.class_names import readable_class_name
from builders.taxonomy import (
    RULE_KINDS,
    TAXONOMY_DIR,
    build_taxonomy,
    group_by_text_encoder,
    group_by_text_similarity,
    name_key,
    shipped_map,
)
from fdrd.schema import COOP_DOMAINS
from tests.builders.coop_class_names import COOP_CLASS_NAMES

# shared/docs/fdrd-data.md, the domain table.
CLASSES_PER_DOMAIN = {"caltech-101": 100, "oxford_pets": 37, "stanford_cars": 196, "oxford_flowers": 102,
                      "food-101": 101, "fgvc_aircraft": 100, "sun397": 397, "dtd": 47, "ucf101": 101}
# The brief: from the dataset's own hierarchy where one exists, a written grouping where none does.
EXPECTED_RULE = {"caltech-101": "semantic grouping", "oxford_flowers": "semantic grouping",
                 "food-101": "semantic grouping", "dtd": "semantic grouping", "oxford_pets": "dataset hierarchy",
                 "stanford_cars": "dataset hierarchy", "fgvc_aircraft": "dataset hierarchy",
                 "sun397": "dataset hierarchy", "ucf101": "dataset hierarchy"}


def test_the_class_lists_have_the_documented_sizes():
    assert set(COOP_CLASS_NAMES) == set(COOP_DOMAINS)
    assert {d: len(names) for d, names in COOP_CLASS_NAMES.items()} == CLASSES_PER_DOMAIN
    assert sum(CLASSES_PER_DOMAIN.values()) == 1181


@pytest.mark.parametrize("domain", COOP_DOMAINS)
def test_every_class_in_exactly_one_group_of_two_or_more(domain):
    data = json.loads((TAXONOMY_DIR / f"{domain}.json").read_text(encoding="utf-8"))
    assert data["domain"] == domain and isinstance(data["version"], int) and data["version"] >= 1
    assert data["rule"] == EXPECTED_RULE[domain] and data["rule"] in RULE_KINDS
    assert data["source"] and data["notes"]
    members = [name_key(m) for group in data["groups"].values() for m in group]
    assert sorted(members) == sorted(name_key(c) for c in COOP_CLASS_NAMES[domain])
    assert min(len(group) for group in data["groups"].values()) >= 2


@pytest.mark.parametrize("domain", COOP_DOMAINS)
def test_build_taxonomy_uses_the_map_for_the_readable_names(domain):
    names = [readable_class_name(domain, n) for n in COOP_CLASS_NAMES[domain]]
    taxonomy = build_taxonomy(domain, names)
    assert taxonomy.meta_source.startswith(f"builders/taxonomies/{domain}.json v")
    assert taxonomy.meta_rule == EXPECTED_RULE[domain]
    assert all(taxonomy.meta_category(n) for n in names)
    assert all(len(taxonomy.siblings(n)) >= 1 for n in names)


def test_groups_are_by_meaning_not_spelling():
    caltech = build_taxonomy("caltech-101", COOP_CLASS_NAMES["caltech-101"])
    # The example: text similarity put these five together; only face and brain belong together.
    groups = {n: caltech.meta_category(n) for n in ("face", "leopard", "motorbike", "bonsai", "brain")}
    assert groups["face"] == groups["brain"] == "human body" and len(set(groups.values())) == 4
    assert caltech.meta_category("leopard") == caltech.meta_category("panda") == "mammal"
    pets = build_taxonomy("oxford_pets", COOP_CLASS_NAMES["oxford_pets"])
    assert pets.meta_category("sphynx") == "cat" and pets.meta_category("pug") == "dog"
    ucf = build_taxonomy("ucf101", COOP_CLASS_NAMES["ucf101"])
    assert ucf.meta_category("Playing_Cello") == ucf.meta_category("Drumming") == "playing musical instruments"


def test_aircraft_variants_never_sit_alone():
    aircraft = build_taxonomy("fgvc_aircraft", COOP_CLASS_NAMES["fgvc_aircraft"])
    data = shipped_map("fgvc_aircraft")
    assert aircraft.meta_category("737-800") == "Boeing 737"  # a family with many variants
    assert aircraft.meta_category("Falcon 900") == aircraft.meta_category("Falcon 2000") == "Dassault Aviation"
    assert set(data["group_rules"].values()) == {"family", "manufacturer", "role"}
    assert aircraft.levels["manufacturer"]["Tu-154"] == "Tupolev"


def test_cars_group_by_make_and_lone_makes_by_body_style():
    cars = build_taxonomy("stanford_cars", COOP_CLASS_NAMES["stanford_cars"])
    assert cars.meta_category("2012 BMW M3 Coupe") == "BMW"
    assert cars.meta_category("2012 Tesla Model S Sedan") == cars.meta_category("2012 Fisker Karma Sedan")
    assert cars.levels["make"]["2012 Tesla Model S Sedan"] == "Tesla"


# --- a CLIP text encoder that knows what things are -----------------------------------------------

MEANINGS = {"animal": ["cat", "dog", "horse", "goat", "sheep", "mouse"],
            "headwear": ["cap", "hat", "helmet", "hood", "beret", "bonnet"]}


def _tiny_semantic_clip(folder):
    """A one-layer CLIP text model whose pooled output is the mean of its token embeddings (attention
    is uniform, the MLP is off), with each word's embedding set to the direction of its meaning:
    words of one meaning embed alike, whatever their spelling. Text, hidden and projection widths
    differ. Saved with save_pretrained so that it loads like a Hub checkpoint."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, PreTrainedTokenizerFast

    words = [w for group in MEANINGS.values() for w in group] + ["a", "photo", "of", "."]
    vocab = {"<pad>": 0, "<unk>": 1, "<s>": 2, "</s>": 3, **{w: i + 4 for i, w in enumerate(words)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 3)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>",
                                        bos_token="<s>", eos_token="</s>")
    hidden, projection = 12, 8
    config = CLIPTextConfig(vocab_size=len(vocab), hidden_size=hidden, intermediate_size=16, projection_dim=projection,
                            num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=16,
                            pad_token_id=0, bos_token_id=2, eos_token_id=3)
    model = CLIPTextModelWithProjection(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        text = model.text_model
        embeddings = text.embeddings.token_embedding.weight
        for axis, group in enumerate(MEANINGS.values()):
            for word in group:
                embeddings[vocab[word], axis] = 1.0
        for word in ("a", "photo", "of", "."):
            embeddings[vocab[word], 2 + len(word) % 3] = 0.3  # the prompt's words, the same for every class
        layer = text.encoder.layers[0]
        for norm in (layer.layer_norm1, layer.layer_norm2, text.final_layer_norm):
            norm.weight.fill_(1.0)
        attention = layer.self_attn  # queries and keys are zero: every token attends uniformly
        attention.v_proj.weight.copy_(torch.eye(hidden))
        attention.out_proj.weight.copy_(torch.eye(hidden))
        model.text_projection.weight.copy_(torch.eye(projection, hidden))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def test_a_text_encoder_groups_by_meaning_where_spelling_cannot(tmp_path):
    encoder = _tiny_semantic_clip(tmp_path / "tiny-clip")
    names = ["cat", "cap", "dog", "hat", "horse", "helmet"]
    by_meaning = group_by_text_encoder(names, encoder, group_size=3)
    assert by_meaning["cat"] == by_meaning["dog"] == by_meaning["horse"]
    assert by_meaning["cap"] == by_meaning["hat"] == by_meaning["helmet"]
    assert by_meaning["cat"] != by_meaning["cap"]
    assert group_by_text_similarity(names, group_size=3) != by_meaning  # spelling pairs cat with cap


def test_image_folders_use_the_named_encoder(tmp_path):
    from builders.sources.imagefolder import ImageFolderSource

    encoder = _tiny_semantic_clip(tmp_path / "tiny-clip")
    root = tmp_path / "things"
    for name in (w for group in MEANINGS.values() for w in group):  # 12 classes: two groups of about 6
        (root / name).mkdir(parents=True)
        (root / name / "x.jpg").write_bytes(b"")
    taxonomy = ImageFolderSource(root, meta_encoder=encoder).taxonomy("things")
    assert taxonomy.meta_rule == "text encoder" and encoder in taxonomy.meta_source
    groups = taxonomy.meta_categories
    assert [len({groups[w] for w in words}) for words in MEANINGS.values()] == [1, 1]  # by meaning,
    assert groups["cat"] != groups["cap"]  # not by spelling


def test_an_encoder_that_cannot_load_is_a_named_error(tmp_path):
    from fdrd.errors import FdrdError

    with pytest.raises(FdrdError, match="cannot load the CLIP text encoder"):
        group_by_text_encoder(["a", "b"], str(tmp_path / "nothing-here"))


class _Planted:
    """Unpickling this creates the marker file: proof that a pickle was opened."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_an_encoder_with_pickled_weights_is_refused_and_never_unpickled(tmp_path):
    import pickle

    from fdrd.errors import FdrdError

    folder = tmp_path / "tiny-clip"
    _tiny_semantic_clip(folder)
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "pwned"
    with open(folder / "pytorch_model.bin", "wb") as handle:
        pickle.dump({"weights": _Planted(marker)}, handle)
    with pytest.raises(FdrdError, match="cannot load the CLIP text encoder"):
        group_by_text_encoder(["cat", "dog"], str(folder))
    assert not marker.exists()
