// One card per classified photo: picture, verdict, one bar per class, "Why?", and the label buttons.
// Keys on the card in focus: 1-9 the classes, 0 none of these, S skip, U undo the last label.
// The "none of these" label and its words come from cards.py (none_label, none_text), written there only.

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (key === "class") el.className = value;
    else if (key === "style") el.style.cssText = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function blobUrl(data, type) {
  if (!data || data.byteLength === 0) return null;
  return URL.createObjectURL(new Blob([data], { type }));
}

function focusNextCard(card) {
  const cards = [...document.querySelectorAll(".picsort-card-result")];
  const next = cards[cards.indexOf(card) + 1];
  if (next) next.focus();
}

function render({ model, el }) {
  let pictureUrl = null;
  let heatmapUrl = null;
  const card = h("div", { class: "picsort-card picsort-card-result", tabindex: "0" });
  el.append(card);

  const send = (message) => model.send(message);

  function labelButton(label, key, text, guessed) {
    const noneLabel = model.get("none_label");
    const chosen = model.get("saved_as") === label;
    const button = h("button", {
      class: "picsort-label-button" + (label === noneLabel ? " picsort-label-none" : "")
        + (guessed ? " picsort-guess" : "") + (chosen ? " picsort-chosen" : ""),
      "data-label": label, "data-key": key || null, type: "button",
      disabled: !model.get("can_label"),
      title: label === noneLabel ? "Save this photo as none of these classes (kept out of training)"
        : `Save this photo labelled '${label}'`,
    }, key ? h("kbd", {}, key) : null, guessed ? `✓ ${text}` : text);
    button.addEventListener("click", () => { send({ type: "label", label }); });
    return button;
  }

  function draw() {
    const hadFocus = card.contains(document.activeElement);
    const focusedLabel = document.activeElement?.dataset?.label;
    const classes = model.get("classes");
    const percents = model.get("percents");
    const probabilities = model.get("probabilities");
    const guess = model.get("guess");
    const closest = model.get("closest");
    const noneText = model.get("none_text");
    const none = model.get("none_of_these");
    const unsure = model.get("unsure");
    card.className = "picsort-card picsort-card-result" + (unsure ? " picsort-card-unsure" : "")
      + (none ? " picsort-card-none" : "") + (model.get("saved_as") ? " picsort-card-saved" : "")
      + (model.get("skipped") ? " picsort-card-skipped" : "");
    card.dataset.guess = guess;

    if (pictureUrl === null) pictureUrl = blobUrl(model.get("picture"), "image/jpeg");
    if (heatmapUrl) { URL.revokeObjectURL(heatmapUrl); heatmapUrl = null; }
    heatmapUrl = blobUrl(model.get("heatmap"), "image/jpeg");

    // The headline is the answer: a class and its percentage, or "none of these" with the closest class small
    // beneath it, so a photo of no bear never headlines a class.
    const closestIndex = classes.indexOf(closest);
    const verdict = none
      ? h("div", { class: "picsort-verdict picsort-verdict-none" }, h("b", {}, noneText))
      : h("div", { class: "picsort-verdict" }, h("b", {}, guess), ` — ${percents[closestIndex]}`);
    const notes = model.get("note")
      ? [h("div", { class: none ? "picsort-none-note" : "picsort-unsure-note" }, model.get("note"))] : [];
    const bars = h("div", { class: "picsort-bars" }, classes.map((name, i) =>
      // Green marks the answer's bar: none for "none of these", whose closest class is no answer.
      h("div", { class: "picsort-bar" + (name === guess ? " picsort-bar-guess" : ""), "data-class": name },
        h("span", { class: "picsort-bar-name" }, name),
        h("span", { class: "picsort-bar-track" },
          h("span", { class: "picsort-bar-fill", style: `width: ${(probabilities[i] * 100).toFixed(1)}%` })),
        h("span", { class: "picsort-bar-value" }, percents[i]))));
    const why = h("button", { class: "picsort-why", type: "button", disabled: !model.get("can_explain") },
      model.get("explaining") ? "Working…" : (heatmapUrl ? "Hide why" : "Why?"));
    why.addEventListener("click", () => send({ type: "why" }));

    const details = none
      ? [verdict, ...notes, h("div", { class: "picsort-guess-small" },
        h("div", { class: "picsort-closest" }, `closest class: ${closest} (${percents[closestIndex]})`), bars), why]
      : [verdict, ...notes, bars, why];
    // "Why?" explains the closest class: for "none of these" there is no class to explain but that one.
    const heatmap = heatmapUrl ? [
      h("img", { class: "picsort-heatmap", src: heatmapUrl, alt: `What pointed the model to ${closest}` }),
      h("div", { class: "picsort-heatmap-caption" },
        "Red and yellow: the parts of the picture that pointed the model to ", h("b", {}, closest),
        ". Blue: parts that mattered little."),
    ] : [];
    const status = model.get("status");
    const statusKind = model.get("status_kind");
    // The model's answer is marked: a class, or "none of these" when the photo looks like none of them.
    const buttons = classes.map((name, i) => labelButton(name, i < 9 ? String(i + 1) : null, name, name === guess));
    buttons.push(labelButton(model.get("none_label"), "0", noneText, guess === model.get("none_label")));
    const skip = h("button", { class: "picsort-skip", "data-key": "S", type: "button",
      disabled: !model.get("can_label") }, h("kbd", {}, "S"), "skip");
    skip.addEventListener("click", () => { send({ type: "skip" }); focusNextCard(card); });
    buttons.push(skip);

    card.replaceChildren(
      h("div", { class: "picsort-card-title" }, h("span", { class: "picsort-filename" }, model.get("name"))),
      h("div", { class: "picsort-card-body" },
        h("img", { class: "picsort-thumbnail", src: pictureUrl, alt: model.get("name"),
          width: model.get("picture_width"), height: model.get("picture_height") }),
        h("div", { class: "picsort-details" }, details)),
      h("div", { class: "picsort-heatmap-box" }, heatmap),
      h("div", { class: "picsort-status" + (statusKind ? ` picsort-${statusKind}` : "") }, status),
      h("div", { class: "picsort-labels", role: "group", "aria-label": "Label this photo" }, buttons),
    );
    if (hadFocus) {
      const again = focusedLabel && card.querySelector(`[data-label="${CSS.escape(focusedLabel)}"]`);
      (again || card).focus();
    }
  }

  card.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const classes = model.get("classes");
    const key = event.key;
    let handled = true;
    if (/^[1-9]$/.test(key) && Number(key) <= classes.length) {
      if (model.get("can_label")) { send({ type: "label", label: classes[Number(key) - 1] }); focusNextCard(card); }
    } else if (key === "0") {
      if (model.get("can_label")) { send({ type: "label", label: model.get("none_label") }); focusNextCard(card); }
    } else if (key === "u" || key === "U") {
      send({ type: "undo" });
    } else if (key === "s" || key === "S") {
      if (model.get("can_label")) { send({ type: "skip" }); focusNextCard(card); }
    } else {
      handled = false;
    }
    if (handled) event.preventDefault();
  });

  const watched = ["classes", "percents", "probabilities", "guess", "closest", "unsure", "none_of_these", "saved_as",
    "skipped", "note", "status", "status_kind", "heatmap", "explaining", "can_label", "can_explain", "name"];
  for (const name of watched) model.on(`change:${name}`, draw);
  draw();
  return () => {
    for (const name of watched) model.off(`change:${name}`, draw);
    if (pictureUrl) URL.revokeObjectURL(pictureUrl);
    if (heatmapUrl) URL.revokeObjectURL(heatmapUrl);
  };
}

export default { render };
