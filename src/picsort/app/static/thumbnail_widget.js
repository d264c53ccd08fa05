// A class's thumbnails in Teach mode: the kernel sends each photo once (add), takes one back (remove), or sends
// them all to a view just starting (reset, the answer to hello). A ✕ asks the kernel to remove its photo.
// h() is dom.js's, put before this file (picsort.app.widget_scripts); titles are text, never markup.

function render({ model, el }) {
  const grid = h("div", { class: "picsort-thumbnail-grid" });
  el.append(grid);
  const tiles = new Map();  // photo id -> { tile, url }

  function add(id, title, buffer) {
    if (tiles.has(id)) return;
    const url = URL.createObjectURL(new Blob([buffer], { type: "image/jpeg" }));
    const remove = h("button", { type: "button", class: "picsort-teach-remove", title, "aria-label": title }, "✕");
    remove.addEventListener("click", () => model.send({ type: "remove", id }));
    const tile = h("div", { class: "picsort-teach-photo" }, h("img", { src: url, alt: "" }), remove);
    grid.append(tile);
    tiles.set(id, { tile, url });
  }

  function drop(id) {
    const known = tiles.get(id);
    if (!known) return;
    known.tile.remove();
    URL.revokeObjectURL(known.url);
    tiles.delete(id);
  }

  const onMessage = (message, buffers) => {
    if (!message) return;
    if (message.type === "add") add(message.id, message.title, buffers[0]);
    else if (message.type === "remove") drop(message.id);
    else if (message.type === "reset") {
      for (const id of [...tiles.keys()]) drop(id);
      message.tiles.forEach((tile, index) => add(tile.id, tile.title, buffers[index]));
    }
  };
  model.on("msg:custom", onMessage);
  model.send({ type: "hello" });
  return () => {
    model.off("msg:custom", onMessage);
    for (const id of [...tiles.keys()]) drop(id);
  };
}

export default { render };
