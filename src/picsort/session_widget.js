// Pings the kernel every few seconds; when pings go unanswered for too long (the kernel was culled, killed
// or restarted, or the connection is gone), a banner tells the visitor the session has ended.
// A late answer hides the banner again, so a kernel that was only busy does not leave it up.

function render({ model, el }) {
  const banner = document.createElement("div");
  banner.className = "picsort-session-ended";
  banner.setAttribute("role", "alert");
  banner.hidden = true;
  const text = document.createElement("span");
  text.textContent = "This session has ended — reload the page to start again. ";
  const reload = document.createElement("button");
  reload.type = "button";
  reload.textContent = "Reload";
  reload.addEventListener("click", () => window.location.reload());
  banner.append(text, reload);
  document.body.append(banner);
  el.classList.add("picsort-session-watch");

  const pending = new Map();
  let number = 0;
  const onPong = (message) => {
    if (message && message.type === "pong") {
      for (const n of [...pending.keys()]) if (n <= message.n) pending.delete(n);
      if (!pending.size) banner.hidden = true;
    }
  };
  model.on("msg:custom", onPong);
  const timer = setInterval(() => {
    const now = Date.now();
    number += 1;
    pending.set(number, now);
    try { model.send({ type: "ping", n: number }); } catch (error) { /* no connection: stays unanswered */ }
    const oldest = Math.min(...pending.values());
    if (now - oldest > model.get("timeout_ms")) banner.hidden = false;
  }, model.get("interval_ms"));
  return () => {
    clearInterval(timer);
    banner.remove();
    model.off("msg:custom", onPong);
  };
}

export default { render };
