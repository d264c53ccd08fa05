// The drop zone: click to choose, drag and drop (files or folders), or paste. Files go to the kernel one at a
// time, each waiting for the kernel's answer, so a selection of any size never makes one huge message and the
// browser holds only one file's bytes at a time. Files over the size limit are reported, never sent.
// h() is dom.js's, put before this file (picsort.app.widget_scripts).

// Every file inside a dropped folder (Chromium and Firefox give folders as entries).
async function filesOfEntry(entry, out) {
  if (entry.isFile) {
    await new Promise((resolve) => entry.file((file) => { out.push(file); resolve(); },
      () => { out.push({ name: entry.name, unreadable: true }); resolve(); }));
  } else if (entry.isDirectory) {
    const reader = entry.createReader();
    for (;;) {
      const batch = await new Promise((resolve) => reader.readEntries(resolve, () => resolve([])));
      if (!batch.length) break;
      for (const child of batch) await filesOfEntry(child, out);
    }
  }
}

async function droppedFiles(transfer) {
  const entries = [...(transfer.items || [])].filter((item) => item.kind === "file")
    .map((item) => (item.webkitGetAsEntry ? item.webkitGetAsEntry() : null));
  if (entries.length && entries.every((entry) => entry)) {
    const out = [];
    for (const entry of entries) await filesOfEntry(entry, out);
    return out;
  }
  return [...transfer.files];
}

function render({ model, el }) {
  const input = h("input", { type: "file", multiple: true, accept: model.get("accept"),
    class: "picsort-file-input", "aria-label": "Choose photos" });
  const choose = h("button", { type: "button", class: "picsort-choose" }, "Choose photos");
  const zone = h("div", { class: "picsort-drop", tabindex: "0" },
    input, choose,
    h("div", { class: "picsort-drop-hint" }, "or drop photos (or a folder) here, or paste a picture"),
    h("div", { class: "picsort-limits" }, model.get("limits_text")));
  const progress = h("div", { class: "picsort-upload-progress", "aria-live": "polite" });
  el.append(zone, progress);

  const queue = [];
  let total = 0;
  let done = 0;
  let pumping = false;
  const kernel = acknowledgedMessages(model);  // acknowledged_messages.js, put before this file

  async function pump() {
    if (pumping) return;
    pumping = true;
    zone.classList.add("picsort-busy");
    const maxBytes = model.get("max_bytes");
    while (queue.length) {
      const file = queue.shift();
      done += 1;
      progress.textContent = `Sending ${done} of ${total}…`;
      const about = { name: file.name || "unnamed file", index: done, total };
      if (file.unreadable) {
        await kernel.send({ type: "unreadable", ...about });
      } else if (file.size > maxBytes) {
        await kernel.send({ type: "too_large", size: file.size, ...about });
      } else {
        let data = null;
        try {
          data = await file.arrayBuffer();
        } catch (error) {
          await kernel.send({ type: "unreadable", ...about });
          continue;
        }
        await kernel.send({ type: "file", size: file.size, ...about }, [data]);
        data = null;
      }
    }
    await kernel.send({ type: "done", total });
    progress.textContent = "";
    total = 0;
    done = 0;
    zone.classList.remove("picsort-busy");
    pumping = false;
  }

  function add(files) {
    if (!files.length) return;
    queue.push(...files);
    total += files.length;
    pump();
  }

  choose.addEventListener("click", () => input.click());
  zone.addEventListener("keydown", (event) => {
    if (event.target === zone && (event.key === "Enter" || event.key === " ")) { event.preventDefault(); input.click(); }
  });
  input.addEventListener("change", () => { add([...input.files]); input.value = ""; });
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("picsort-over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("picsort-over"));
  zone.addEventListener("drop", async (event) => {
    event.preventDefault();
    zone.classList.remove("picsort-over");
    add(await droppedFiles(event.dataTransfer));
  });
  let pasted = 0;
  const onPaste = (event) => {
    if (!model.get("paste")) return;
    const target = event.target;
    if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.isContentEditable)) return;
    const files = [...(event.clipboardData?.files || [])].map((file) => {
      pasted += 1;
      const suffix = (file.type.split("/")[1] || "png").replace("jpeg", "jpg");
      return new File([file], `pasted-${pasted}.${suffix}`, { type: file.type });
    });
    if (files.length) { event.preventDefault(); add(files); }
  };
  document.addEventListener("paste", onPaste);
  return () => {
    document.removeEventListener("paste", onPaste);
    kernel.close();
  };
}

export default { render };
