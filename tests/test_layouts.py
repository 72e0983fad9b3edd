"""MovieLens layouts not shipped here (ML-10M, ML-20M+), on small generated folders of the same form."""

from __future__ import annotations

import numpy as np

from deepmovie.data.dataset import load_dataset


def test_ml10m_layout_half_stars_and_tags_dat(tmp_path):
    (tmp_path / "ratings.dat").write_text("1::10::4.5::100\n1::20::3::101\n2::10::0.5::102\n")
    (tmp_path / "movies.dat").write_text(
        "10::Heat (1995)::Action|Crime|Thriller\n20::Balto (1995)::Animation|Children's\n"
    )
    (tmp_path / "tags.dat").write_text("1::10::Heist::100\n2::10::heist::101\n2::20::dog::102\n")
    data = load_dataset(tmp_path)
    assert data.layout == "ml-10m"
    assert (data.scale.low, data.scale.high, data.scale.step) == (0.5, 5.0, 0.5)
    heat = int(data.item_ids.index_of(np.array([10]))[0])
    assert data.items.tags[heat] == ["heist"]  # case-folded and distinct
    assert data.items.years[heat] == 1995
    assert {data.items.genre_names[g] for g in np.flatnonzero(data.items.genres[heat])} == {
        "Action",
        "Crime",
        "Thriller",
    }
    assert "heist" in data.items.documents[heat] and "Heat (1995)" in data.items.documents[heat]


def test_ml20m_layout_reads_the_tag_genome(tmp_path):
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,5\n2,2,3.5,6\n")
    (tmp_path / "movies.csv").write_text(
        'movieId,title,genres\n1,"Toy Story (1995)",Animation|Comedy\n2,"Heat, The (1995)",Crime\n'
    )
    (tmp_path / "tags.csv").write_text("userId,movieId,tag,timestamp\n1,1,pixar,5\n")
    (tmp_path / "genome-tags.csv").write_text("tagId,tag\n1,toys\n2,heist\n3,friendship\n")
    (tmp_path / "genome-scores.csv").write_text(
        "movieId,tagId,relevance\n1,1,0.9\n1,2,0.1\n1,3,0.8\n2,1,0.05\n2,2,0.95\n2,3,0.2\n"
    )
    data = load_dataset(tmp_path)
    assert data.layout == "ml-latest"
    toy = int(data.item_ids.index_of(np.array([1]))[0])
    heat = int(data.item_ids.index_of(np.array([2]))[0])
    assert data.items.titles[heat] == "Heat, The (1995)"  # quoted comma kept
    assert data.items.tags[toy][:3] == ["pixar", "toys", "friendship"]  # user tags, then genome by relevance
    assert data.items.tags[heat][0] == "heist"
