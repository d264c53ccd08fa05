// A button that asks the kernel for a file and hands the bytes to the browser as a download.

function render({ model, el }) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "picsort-download";
  button.textContent = model.get("description");
  const note = document.createElement("span");
  note.className = "picsort-download-note";
  note.setAttribute("aria-live", "polite");
  el.append(button, note);

  button.addEventListener("click", () => {
    button.disabled = true;
    note.textContent = "Preparing…";
    model.send({ type: "download" });
  });
  const onMessage = (message, buffers) => {
    if (!message) return;
    if (message.type === "file") {
      const url = URL.createObjectURL(new Blob(buffers, { type: message.mime || "application/octet-stream" }));
      const link = document.createElement("a");
      link.href = url;
      link.download = message.name;
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
    }
    if (message.type === "file" || message.type === "message") {
      note.textContent = message.text || "";
      button.disabled = false;
    }
  };
  model.on("msg:custom", onMessage);
  return () => model.off("msg:custom", onMessage);
}

export default { render };
