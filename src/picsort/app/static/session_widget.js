// Pings the kernel every few seconds; when pings go unanswered for too long (the kernel was culled, killed
// or restarted, or the connection is gone), a banner tells the visitor the session has ended.
// A late answer hides the banner again, so a kernel that was only busy does not leave it up.
// It also tells the kernel who this is: a random visitor id kept in localStorage, so Teach mode finds this
// browser's photos again after a reload (a new id for each page where the browser keeps nothing).

const VISITOR_KEY = "picsort-visitor";
const VISITOR_ID = /^[0-9a-f]{32}$/;

function storage() {
  try { return window.localStorage; } catch (error) { return null; }  // blocked, or a sandboxed page
}

function keptVisitorId() {
  try {
    const id = storage()?.getItem(VISITOR_KEY);
    return VISITOR_ID.test(id || "") ? id : null;
  } catch (error) { return null; }
}

function keepVisitorId(id) {
  try { storage()?.setItem(VISITOR_KEY, id); } catch (error) { /* this page's id only */ }
}

function newVisitorId() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);  // unlike randomUUID, also on --lan's plain http pages
  return [...bytes].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

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

  let visitor = keptVisitorId();
  if (!visitor) {
    visitor = newVisitorId();
    keepVisitorId(visitor);
  }
  let visitorKnown = false;  // until the kernel answers, the id goes with every ping
  const sendVisitor = () => {
    try { model.send({ type: "visitor", id: visitor }); } catch (error) { /* sent again with the next ping */ }
  };

  const pending = new Map();
  let number = 0;
  const onMessage = (message) => {
    if (message && message.type === "pong") {
      for (const n of [...pending.keys()]) if (n <= message.n) pending.delete(n);
      if (!pending.size) banner.hidden = true;
    } else if (message && message.type === "visitor" && VISITOR_ID.test(message.id || "")) {
      visitorKnown = true;
      if (message.id !== visitor) {  // the kernel refused ours: keep the one it chose
        visitor = message.id;
        keepVisitorId(visitor);
      }
    }
  };
  model.on("msg:custom", onMessage);
  sendVisitor();
  const timer = setInterval(() => {
    const now = Date.now();
    number += 1;
    pending.set(number, now);
    if (!visitorKnown) sendVisitor();
    try { model.send({ type: "ping", n: number }); } catch (error) { /* no connection: stays unanswered */ }
    const oldest = Math.min(...pending.values());
    if (now - oldest > model.get("timeout_ms")) banner.hidden = false;
  }, model.get("interval_ms"));
  return () => {
    clearInterval(timer);
    banner.remove();
    model.off("msg:custom", onMessage);
  };
}

export default { render };
