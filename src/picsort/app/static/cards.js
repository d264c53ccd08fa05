// One card per file: for a classified photo its picture, verdict, one bar per class, "Why?" and the label buttons
// (ResultCard); for a file that could not be used, why (ProblemCard, the traits name and problem).
// The "none of these" label, its words and the keys on a card in focus come from cards.py (none_label, none_text,
// class_keys, action_keys), written there only. h() is dom.js's, put before this file (picsort.app.widget_scripts).

function blobUrl(data, type) {
  if (!data || data.byteLength === 0) return null;
  return URL.createObjectURL(new Blob([data], { type }));
}

// The result card after this one in the box the page put the cards in (the parent of each card's widget element):
// never another widget's element elsewhere on the page.
function focusNextCard(card) {
  const box = card.parentElement?.parentElement;
  if (!box) return;
  const cards = [...box.querySelectorAll(":scope > * > .picsort-card-result")];
  const next = cards[cards.indexOf(card) + 1];
  if (next) next.focus();
}

// What each trait shows: a change redraws only the parts that show it (one draw per part for the traits that
// change together in one message), so the picture and the heatmap keep their blob URLs until they change.
const PARTS_OF = {
  name: ["title"], picture: ["picture"], picture_width: ["picture"], picture_height: ["picture"],
  classes: ["details", "buttons"], percents: ["details"], probabilities: ["details"],
  answer: ["look", "details", "marks"], closest: ["details", "heatmap"], unsure: ["look"],
  none_of_these: ["look", "details"], note: ["details"], saved_as: ["look", "marks"], skipped: ["look"],
  status: ["status"], status_kind: ["status"], heatmap: ["heatmap"], explaining: ["why"], can_explain: ["why"],
  can_label: ["marks"], none_label: ["details", "buttons"], none_text: ["details", "buttons"],
  class_keys: ["buttons"], action_keys: ["buttons"],
};
// The order parts are drawn in, and the parts each one needs drawn after it.
const DRAW_ORDER = ["title", "picture", "look", "details", "heatmap", "why", "status", "buttons", "marks"];
const THEN = { details: ["why"], heatmap: ["why"], buttons: ["marks"] };

function renderProblem({ model, el }) {
  // Text only (textContent): a file's name and the message about it never become markup.
  el.append(h("div", { class: "picsort-card picsort-card-problem" },
    h("div", { class: "picsort-card-title" }, h("span", { class: "picsort-filename" }, model.get("name"))),
    h("div", { class: "picsort-error" }, `⚠ ${model.get("problem")}`),
    h("div", { class: "picsort-problem-hint" }, "Nothing was saved for this file.")));
}

function render({ model, el }) {
  if (model.get("problem") !== undefined) return renderProblem({ model, el });
  const urls = { picture: null, heatmap: null };
  const filename = h("span", { class: "picsort-filename" });
  const thumbnail = h("img", { class: "picsort-thumbnail" });
  const details = h("div", { class: "picsort-details" });
  const heatmapBox = h("div", { class: "picsort-heatmap-box" });
  const statusLine = h("div", { class: "picsort-status" });
  const labels = h("div", { class: "picsort-labels", role: "group", "aria-label": "Label this photo" });
  const card = h("div", { class: "picsort-card picsort-card-result", tabindex: "0" },
    h("div", { class: "picsort-card-title" }, filename),
    h("div", { class: "picsort-card-body" }, thumbnail, details),
    heatmapBox, statusLine, labels);
  el.append(card);
  let why = null; // the "Why?" button, drawn with the details
  let buttons = []; // { button, label, text }: the label buttons, then skip (label null)

  const send = (message) => model.send(message);

  function newUrl(kind) {
    if (urls[kind]) URL.revokeObjectURL(urls[kind]);
    urls[kind] = blobUrl(model.get(kind), "image/jpeg");
    return urls[kind];
  }

  function labelButton(label, key, title) {
    const text = h("span", {});
    const button = h("button", { class: "picsort-label-button" + (label === model.get("none_label") ? " picsort-label-none" : ""),
      "data-label": label, "data-key": key || null, type: "button", title }, key ? h("kbd", {}, key) : null, text);
    button.addEventListener("click", () => { send({ type: "label", label }); });
    return { button, label, text };
  }

  const draw = {
    title() {
      filename.textContent = model.get("name");
      thumbnail.alt = model.get("name");
    },
    picture() {
      thumbnail.src = newUrl("picture") || "";
      thumbnail.width = model.get("picture_width");
      thumbnail.height = model.get("picture_height");
    },
    look() {
      card.className = "picsort-card picsort-card-result" + (model.get("unsure") ? " picsort-card-unsure" : "")
        + (model.get("none_of_these") ? " picsort-card-none" : "") + (model.get("saved_as") ? " picsort-card-saved" : "")
        + (model.get("skipped") ? " picsort-card-skipped" : "");
      card.dataset.answer = model.get("answer");
    },
    details() {
      const classes = model.get("classes");
      const percents = model.get("percents");
      const probabilities = model.get("probabilities");
      const answer = model.get("answer");
      const closest = model.get("closest");
      const none = model.get("none_of_these");
      const whyHadFocus = why !== null && why === document.activeElement;
      // The headline is the answer: a class and its percentage, or "none of these" with the closest class small
      // beneath it, so a photo of no bear never headlines a class.
      const closestIndex = classes.indexOf(closest);
      const verdict = none
        ? h("div", { class: "picsort-verdict picsort-verdict-none" }, h("b", {}, model.get("none_text")))
        : h("div", { class: "picsort-verdict" }, h("b", {}, answer), ` — ${percents[closestIndex]}`);
      const notes = model.get("note")
        ? [h("div", { class: none ? "picsort-none-note" : "picsort-unsure-note" }, model.get("note"))] : [];
      const bars = h("div", { class: "picsort-bars" }, classes.map((name, i) =>
        // Green marks the answer's bar: none for "none of these", whose closest class is no answer.
        h("div", { class: "picsort-bar" + (name === answer ? " picsort-bar-answer" : ""), "data-class": name },
          h("span", { class: "picsort-bar-name" }, name),
          h("span", { class: "picsort-bar-track" },
            h("span", { class: "picsort-bar-fill", style: `width: ${(probabilities[i] * 100).toFixed(1)}%` })),
          h("span", { class: "picsort-bar-value" }, percents[i]))));
      why = h("button", { class: "picsort-why", type: "button" });
      why.addEventListener("click", () => send({ type: "why" }));
      details.replaceChildren(...(none
        ? [verdict, ...notes, h("div", { class: "picsort-answer-small" },
          h("div", { class: "picsort-closest" }, `closest class: ${closest} (${percents[closestIndex]})`), bars), why]
        : [verdict, ...notes, bars, why]));
      if (whyHadFocus) why.focus();
    },
    heatmap() {
      // "Why?" explains the closest class: for "none of these" there is no class to explain but that one.
      const closest = model.get("closest");
      const url = newUrl("heatmap");
      heatmapBox.replaceChildren(...(url ? [
        h("img", { class: "picsort-heatmap", src: url, alt: `What pointed the model to ${closest}` }),
        h("div", { class: "picsort-heatmap-caption" },
          "Red and yellow: the parts of the picture that pointed the model to ", h("b", {}, closest),
          ". Blue: parts that mattered little."),
      ] : []));
    },
    why() {
      why.disabled = !model.get("can_explain");
      why.textContent = model.get("explaining") ? "Working…" : (urls.heatmap ? "Hide why" : "Why?");
    },
    status() {
      const kind = model.get("status_kind");
      statusLine.className = "picsort-status" + (kind ? ` picsort-${kind}` : "");
      statusLine.textContent = model.get("status");
    },
    buttons() {
      const focused = labels.contains(document.activeElement) ? document.activeElement.dataset.label : undefined;
      const noneLabel = model.get("none_label");
      const classKeys = model.get("class_keys");
      const actionKeys = model.get("action_keys");
      buttons = model.get("classes").map((name, i) =>
        labelButton(name, classKeys[i], `Save this photo labelled '${name}'`));
      buttons.push(labelButton(noneLabel, actionKeys.none,
        `Save this photo as ${model.get("none_text")} (kept out of training)`));
      const skip = h("button", { class: "picsort-skip", "data-key": actionKeys.skip, type: "button" },
        h("kbd", {}, actionKeys.skip), "skip");
      skip.addEventListener("click", () => { send({ type: "skip" }); focusNextCard(card); });
      buttons.push({ button: skip, label: null, text: null });
      labels.replaceChildren(...buttons.map(({ button }) => button));
      if (focused !== undefined) (buttons.find(({ label }) => label === focused)?.button || card).focus();
    },
    marks() {
      // The model's answer is marked: a class, or "none of these" when the photo looks like none of them.
      const answer = model.get("answer");
      const saved = model.get("saved_as");
      const noneLabel = model.get("none_label");
      for (const { button, label, text } of buttons) {
        button.disabled = !model.get("can_label");
        if (label === null) continue;
        const shown = label === noneLabel ? model.get("none_text") : label;
        button.classList.toggle("picsort-answer", label === answer);
        button.classList.toggle("picsort-chosen", label === saved);
        text.textContent = label === answer ? `✓ ${shown}` : shown;
      }
    },
  };

  const pending = new Set();
  function drawPending() {
    for (const part of [...pending]) for (const next of THEN[part] || []) pending.add(next);
    for (const part of DRAW_ORDER) if (pending.has(part)) draw[part]();
    pending.clear();
  }
  const onChange = {};
  for (const [trait, parts] of Object.entries(PARTS_OF)) {
    onChange[trait] = () => {
      if (!pending.size) queueMicrotask(drawPending);
      for (const part of parts) pending.add(part);
    };
    model.on(`change:${trait}`, onChange[trait]);
  }
  for (const part of DRAW_ORDER) pending.add(part);
  drawPending();

  card.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key.length === 1 ? event.key.toUpperCase() : null;
    const actionKeys = model.get("action_keys");
    const classIndex = key ? model.get("class_keys").indexOf(key) : -1;
    let handled = true;
    if (classIndex >= 0) {
      if (model.get("can_label")) { send({ type: "label", label: model.get("classes")[classIndex] }); focusNextCard(card); }
    } else if (key === actionKeys.none) {
      if (model.get("can_label")) { send({ type: "label", label: model.get("none_label") }); focusNextCard(card); }
    } else if (key === actionKeys.undo) {
      send({ type: "undo" });
    } else if (key === actionKeys.skip) {
      if (model.get("can_label")) { send({ type: "skip" }); focusNextCard(card); }
    } else {
      handled = false;
    }
    if (handled) event.preventDefault();
  });

  return () => {
    for (const [trait, handler] of Object.entries(onChange)) model.off(`change:${trait}`, handler);
    for (const url of Object.values(urls)) if (url) URL.revokeObjectURL(url);
  };
}

export default { render };
