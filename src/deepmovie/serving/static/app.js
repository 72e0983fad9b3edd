// The DeepMovie page: rate a few movies for a new user's recommendations (fold-in), or look up a known
// user. Each recommendation shows its genres, the rater's predicted stars (when a rater is served), why
// it is there ("because you liked ...") and a "More like this" button; "More" fetches the next page.
"use strict";

const PAGE = 10; // items per page
const SIMILAR = 5; // items under "More like this"
const myRatings = new Map(); // item id -> {movie, rating}
let scale = { low: 1, high: 5, step: 1 };
const lists = {}; // container id -> true while it shows a list (a new genre filter redraws it)

const $ = (id) => document.getElementById(id);

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

async function call(path, options) {
  const response = await fetch(path, options);
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const detail = body && (Array.isArray(body.detail) ? body.detail.map((d) => d.msg).join("; ") : body.detail);
    throw new Error(detail || `HTTP ${response.status}`);
  }
  return body;
}

function el(tag, content, className) {
  const node = document.createElement(tag);
  if (content !== undefined && content !== null) node.textContent = content;
  if (className) node.className = className;
  return node;
}

function title(movie) {
  return movie.title || `item ${movie.item}`;
}

function stars(rating) {
  const span = Math.max(scale.high - scale.low, 1e-9);
  const full = Math.min(5, Math.max(1, Math.round(((rating - scale.low) / span) * 4) + 1));
  return "★".repeat(full) + "☆".repeat(5 - full) + ` ${rating.toFixed(1)}`;
}

function genreFilter() {
  return $("genre").value;
}

// --- search and rate ------------------------------------------------------------------------------

function starPicker(movie) {
  const box = el("span", null, "rate");
  box.setAttribute("role", "group");
  box.setAttribute("aria-label", `rate ${title(movie)}`);
  const low = Math.max(1, Math.ceil(scale.low));
  const paint = () => {
    const mine = myRatings.get(movie.item);
    for (const button of box.children) button.classList.toggle("on", !!mine && Number(button.dataset.value) <= mine.rating);
  };
  for (let r = low; r <= scale.high; r++) {
    const button = el("button", "★", "star");
    button.type = "button";
    button.dataset.value = String(r);
    button.title = `${r} star${r > 1 ? "s" : ""}`;
    button.setAttribute("aria-label", `${r} star${r > 1 ? "s" : ""}`);
    button.addEventListener("click", () => {
      const mine = myRatings.get(movie.item);
      if (mine && mine.rating === r) myRatings.delete(movie.item); // a second click takes it back
      else myRatings.set(movie.item, { movie, rating: r });
      paint();
      renderMyRatings();
    });
    box.appendChild(button);
  }
  paint();
  return box;
}

function renderMyRatings() {
  const list = $("my-ratings");
  list.replaceChildren();
  if (myRatings.size === 0) list.appendChild(el("li", "none yet: search and pick stars", "empty"));
  for (const [item, entry] of myRatings) {
    const li = el("li");
    li.dataset.item = String(item);
    li.appendChild(el("span", title(entry.movie), "title"));
    li.appendChild(el("span", "★".repeat(entry.rating), "stars"));
    const remove = el("button", "✕", "remove");
    remove.type = "button";
    remove.setAttribute("aria-label", `remove ${title(entry.movie)}`);
    remove.addEventListener("click", () => {
      myRatings.delete(item);
      renderMyRatings();
      for (const picker of document.querySelectorAll(`#search-results li[data-item="${CSS.escape(String(item))}"] .star`)) {
        picker.classList.remove("on");
      }
    });
    li.appendChild(remove);
    list.appendChild(li);
  }
  $("recommend-new").disabled = myRatings.size === 0 || $("recommend-new").dataset.cold === "no";
}

$("search-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError("");
  try {
    const q = encodeURIComponent($("search").value);
    const movies = await call(`/items/search?q=${q}&limit=10`);
    const list = $("search-results");
    list.replaceChildren();
    if (movies.length === 0) list.appendChild(el("li", "no match", "empty"));
    for (const movie of movies) {
      const li = el("li");
      li.dataset.item = String(movie.item);
      const text = el("span", null, "movie");
      text.appendChild(el("span", title(movie), "title"));
      text.appendChild(el("span", movie.genres.join(" · "), "genres"));
      li.appendChild(text);
      li.appendChild(starPicker(movie));
      list.appendChild(li);
    }
  } catch (error) {
    showError(error.message);
  }
});

// --- recommendation lists ---------------------------------------------------------------------------

// One recommendation; `hidden`: items "More like this" leaves out (the new user's own ratings).
function recItem(movie, hidden) {
  const li = el("li", null, "rec");
  li.dataset.item = String(movie.item);
  const head = el("div", null, "rec-head");
  head.appendChild(el("span", title(movie), "title"));
  if (movie.rating !== null && movie.rating !== undefined) {
    const shown = el("span", stars(movie.rating), "stars");
    shown.title = "predicted stars";
    head.appendChild(shown);
  }
  li.appendChild(head);
  li.appendChild(el("div", movie.genres.join(" · "), "genres"));
  if (movie.because && movie.because.length) {
    li.appendChild(el("p", `because you liked ${movie.because.map(title).join(", ")}`, "because"));
  }
  const more = el("button", "More like this", "more-like");
  more.type = "button";
  const similar = el("div", null, "similar");
  more.addEventListener("click", async () => {
    showError("");
    if (similar.childElementCount) {
      similar.replaceChildren(); // a second click folds it away
      more.textContent = "More like this";
      return;
    }
    try {
      const k = SIMILAR + hidden.size;
      const found = await call(`/similar?item=${encodeURIComponent(movie.item)}&k=${k}`);
      similar.appendChild(el("p", `Like ${title(movie)}:`, "similar-caption"));
      const list = el("ul");
      for (const other of found.items.filter((m) => !hidden.has(String(m.item))).slice(0, SIMILAR)) {
        const row = el("li");
        row.dataset.item = String(other.item);
        row.appendChild(el("span", title(other), "title"));
        row.appendChild(el("span", other.genres.join(" · "), "genres"));
        list.appendChild(row);
      }
      similar.appendChild(list);
      more.textContent = "Hide similar";
    } catch (error) {
      showError(error.message);
    }
  });
  li.appendChild(more);
  li.appendChild(similar);
  return li;
}

// Show a list in `container`; `fetchPage(offset)` returns one page of it. "More" appends the next page.
async function showList(container, caption, fetchPage, hidden = new Set()) {
  const box = $(container);
  const first = await fetchPage(0);
  const heading = el("h3", caption);
  const note = el("p", first.rater ? `ranked by ${first.ranker}; stars predicted by ${first.rater}` : `ranked by ${first.ranker}`, "note");
  const list = el("ol", null, "recs");
  const more = el("button", "More", "more");
  more.type = "button";
  const state = { offset: 0 };
  const add = (page) => {
    for (const movie of page.items) list.appendChild(recItem(movie, hidden));
    state.offset = page.offset + page.items.length;
    more.hidden = page.items.length < PAGE;
  };
  more.addEventListener("click", async () => {
    showError("");
    more.disabled = true;
    try {
      add(await fetchPage(state.offset));
    } catch (error) {
      showError(error.message);
    } finally {
      more.disabled = false;
    }
  });
  add(first);
  const children = [heading, note, list, more];
  if (first.items.length === 0) children.splice(2, 0, el("p", "nothing left to recommend with this filter", "empty"));
  box.replaceChildren(...children);
  lists[container] = true;
}

async function recommendNew() {
  showError("");
  const ratings = [...myRatings].map(([item, entry]) => ({ item, rating: entry.rating }));
  const genre = genreFilter();
  try {
    await showList("new-recs", "Recommended for you", (offset) =>
      call("/recommend", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ ratings, k: PAGE, offset, genres: genre ? [genre] : [] }),
      }),
      new Set(ratings.map((r) => String(r.item))),
    );
  } catch (error) {
    showError(error.message);
  }
}

$("recommend-new").addEventListener("click", recommendNew);

$("user-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError("");
  $("user-recs").replaceChildren();
  $("user-history").replaceChildren();
  delete lists["user-recs"];
  const user = encodeURIComponent($("user").value.trim());
  const genre = genreFilter();
  try {
    const history = await call(`/users/${user}/ratings`);
    await showList("user-recs", `Recommended for user ${history.user}`, (offset) =>
      call(`/recommend?user=${user}&k=${PAGE}&offset=${offset}${genre ? `&genres=${encodeURIComponent(genre)}` : ""}`),
    );
    const box = $("user-history");
    box.appendChild(el("h3", `Rated by user ${history.user} (${history.ratings.length})`));
    const list = el("ul", null, "movies history");
    for (const movie of history.ratings.slice(0, 20)) {
      const li = el("li");
      li.appendChild(el("span", title(movie), "title"));
      li.appendChild(el("span", stars(movie.rating), "stars"));
      list.appendChild(li);
    }
    box.appendChild(list);
  } catch (error) {
    showError(error.message);
  }
});

// A new genre filter redraws the lists on show.
$("genre").addEventListener("change", () => {
  if (lists["new-recs"] && myRatings.size) recommendNew();
  if (lists["user-recs"]) $("user-form").requestSubmit();
});

call("/health")
  .then((health) => {
    scale = health.scale;
    const parts = [`ranked by ${health.ranker}`, health.rater ? `stars by ${health.rater}` : "no stars (no rater)"];
    parts.push(`${health.users.toLocaleString()} users, ${health.items.toLocaleString()} movies`);
    $("model").textContent = parts.join(" · ");
    for (const genre of health.genres) $("genre").appendChild(new Option(genre, genre));
    if (!health.cold_start) {
      $("recommend-new").dataset.cold = "no";
      $("cold-note").textContent = `${health.ranker} cannot fold a new user in: look up a known user instead`;
      $("cold-note").hidden = false;
    }
    renderMyRatings();
  })
  .catch((error) => showError(error.message));
