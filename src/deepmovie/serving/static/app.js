// The DeepMovie page: search and rate movies for a cold-start recommendation, or look up a user.
"use strict";

const myRatings = new Map(); // item id -> {movie, rating}
let scale = { low: 1, high: 5, step: 1 };

const $ = (id) => document.getElementById(id);

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

async function call(path, options) {
  const response = await fetch(path, options);
  const body = await response.json();
  if (!response.ok) {
    const detail = Array.isArray(body.detail) ? body.detail.map((d) => d.msg).join("; ") : body.detail;
    throw new Error(detail || `HTTP ${response.status}`);
  }
  return body;
}

function text(tag, content, className) {
  const node = document.createElement(tag);
  node.textContent = content;
  if (className) node.className = className;
  return node;
}

function stars(rating) {
  const full = Math.round(((rating - scale.low) / (scale.high - scale.low)) * 4) + 1;
  return "★".repeat(full) + "☆".repeat(5 - full) + ` ${rating.toFixed(2)}`;
}

function movieTable(caption, rows, valueHeader, value) {
  const table = document.createElement("table");
  table.appendChild(text("caption", caption));
  const head = table.createTHead().insertRow();
  for (const name of ["Title", "Genres", valueHeader]) head.appendChild(text("th", name));
  const body = table.createTBody();
  for (const movie of rows) {
    const row = body.insertRow();
    row.appendChild(text("td", movie.title || `item ${movie.item}`, "title"));
    row.appendChild(text("td", movie.genres.join(", "), "genres"));
    row.appendChild(text("td", value(movie), "stars"));
  }
  return table;
}

function renderMyRatings() {
  const list = $("my-ratings");
  list.replaceChildren();
  if (myRatings.size === 0) list.appendChild(text("li", "none yet: search and pick stars", "empty"));
  for (const [item, entry] of myRatings) {
    const li = text("li", entry.movie.title || `item ${item}`);
    li.appendChild(text("span", "★".repeat(entry.rating), "stars"));
    list.appendChild(li);
  }
  $("recommend-new").disabled = myRatings.size === 0;
}

function starPicker(movie) {
  const select = document.createElement("select");
  select.className = "rate";
  select.appendChild(new Option("rate…", ""));
  for (let r = Math.ceil(scale.low); r <= scale.high; r++) select.appendChild(new Option(`${r} ★`, r));
  select.addEventListener("change", () => {
    if (select.value === "") myRatings.delete(movie.item);
    else myRatings.set(movie.item, { movie, rating: Number(select.value) });
    renderMyRatings();
  });
  return select;
}

$("search-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError("");
  try {
    const q = encodeURIComponent($("search").value);
    const movies = await call(`/items/search?q=${q}&limit=10`);
    const list = $("search-results");
    list.replaceChildren();
    if (movies.length === 0) list.appendChild(text("li", "no match", "empty"));
    for (const movie of movies) {
      const li = text("li", `${movie.title || movie.item} `);
      li.appendChild(text("span", movie.genres.join(", "), "genres"));
      li.appendChild(starPicker(movie));
      list.appendChild(li);
    }
  } catch (error) {
    showError(error.message);
  }
});

$("recommend-new").addEventListener("click", async () => {
  showError("");
  try {
    const ratings = [...myRatings].map(([item, entry]) => ({ item, rating: entry.rating }));
    const recs = await call("/recommend", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ratings, k: 10 }),
    });
    $("new-recs").replaceChildren(movieTable("Recommended for you", recs.items, "Predicted", (m) => stars(m.rating)));
  } catch (error) {
    showError(error.message);
  }
});

$("user-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError("");
  $("user-recs").replaceChildren();
  $("user-history").replaceChildren();
  try {
    const user = encodeURIComponent($("user").value.trim());
    const [recs, history] = await Promise.all([
      call(`/recommend?user=${user}&k=10`),
      call(`/users/${user}/ratings`),
    ]);
    $("user-recs").replaceChildren(
      movieTable(`Recommended for user ${recs.user}`, recs.items, "Predicted", (m) => stars(m.rating)),
    );
    $("user-history").replaceChildren(
      movieTable(`Rated by user ${history.user} (${history.ratings.length})`, history.ratings.slice(0, 20), "Rating", (m) => stars(m.rating)),
    );
  } catch (error) {
    showError(error.message);
  }
});

call("/health")
  .then((health) => {
    scale = health.scale;
    $("model").textContent = `${health.model}: ${health.users.toLocaleString()} users, ${health.items.toLocaleString()} movies`;
  })
  .catch((error) => showError(error.message));
