// The webcam for Teach: one click takes one photo, holding the button takes a burst. Each photo is drawn at the
// size the model needs (its shortest side `side` px, not the camera's resolution) and sent as a JPEG, waiting for
// the kernel's answer before the next, so a burst never piles up messages.
// h() is dom.js's, put before this file (picsort.app.widget_scripts).

const BURST_MS = 300;

function render({ model, el }) {
  const start = h("button", { type: "button", class: "picsort-camera-start" }, "Use the camera");
  const take = h("button", { type: "button", class: "picsort-camera-take", title: "Click for one photo, hold for several" },
    "Take photo (hold for more)");
  const stopButton = h("button", { type: "button", class: "picsort-camera-stop" }, "Stop camera");
  const video = h("video", { class: "picsort-camera-video", autoplay: "", muted: "", playsinline: "" });
  const note = h("div", { class: "picsort-camera-note", "aria-live": "polite" });
  const live = h("div", { class: "picsort-camera-live" }, video, h("div", {}, take, " ", stopButton));
  live.style.display = "none";
  el.append(start, live, note);

  let stream = null;
  let taken = 0;
  let sending = false;
  let holding = null;
  const kernel = acknowledgedMessages(model);  // acknowledged_messages.js, put before this file

  function stopCamera() {
    if (holding) { clearInterval(holding); holding = null; }
    if (stream) stream.getTracks().forEach((track) => track.stop());
    stream = null;
    video.srcObject = null;
    live.style.display = "none";
    start.style.display = "";
  }

  start.addEventListener("click", async () => {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      note.textContent = "This browser gives no camera to this page (a camera needs https, or this computer's own address).";
      return;
    }
    note.textContent = "Starting the camera…";
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
    } catch (error) {
      note.textContent = error && error.name === "NotAllowedError"
        ? "The camera was not allowed: allow it in the browser's address bar, then try again."
        : "No camera could be started" + (error && error.name ? ` (${error.name}).` : ".");
      return;
    }
    video.srcObject = stream;
    await video.play().catch(() => {});
    live.style.display = "";
    start.style.display = "none";
    note.textContent = "";
  });
  stopButton.addEventListener("click", stopCamera);
  // A hidden section (Teach closed) keeps no camera on: the light next to the lens would say it still films.
  const hiddenCheck = setInterval(() => { if (stream && el.offsetParent === null) stopCamera(); }, 1000);

  // Photos asked for and not yet taken: a click while the previous photo is still on its way is taken after it,
  // never dropped (a quick clicker would otherwise lose photos without a word).
  let owed = 0;

  async function takePhotos() {
    if (sending) return;
    sending = true;
    try {
      while (owed > 0 && stream && video.videoWidth) {
        owed -= 1;
        await sendPhoto();
      }
    } finally {
      owed = 0;
      sending = false;
    }
  }

  async function sendPhoto() {
    const side = model.get("side");
    const scale = Math.min(1, side / Math.min(video.videoWidth, video.videoHeight));
    const canvas = h("canvas");
    canvas.width = Math.max(1, Math.round(video.videoWidth * scale));
    canvas.height = Math.max(1, Math.round(video.videoHeight * scale));
    canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.92));
    if (!blob) return;
    const data = await blob.arrayBuffer();
    taken += 1;
    await kernel.send({ type: "photo", name: `camera-${taken}.jpg` }, [data]);
  }

  // One photo per click or key press, each taken in turn.
  function capture() {
    owed += 1;
    takePhotos();
  }

  // While held, one more each BURST_MS, skipped while one is still being sent (a burst never piles up).
  function captureBurst() {
    if (!sending) capture();
  }

  // Press: one photo at once; still held after BURST_MS, a burst.
  take.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    capture();
    if (!holding) holding = setInterval(captureBurst, BURST_MS);
  });
  const release = () => { if (holding) { clearInterval(holding); holding = null; } };
  take.addEventListener("pointerup", release);
  take.addEventListener("pointerleave", release);
  take.addEventListener("pointercancel", release);
  take.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); if (!event.repeat) capture(); }
  });
  return () => {
    clearInterval(hiddenCheck);
    stopCamera();
    kernel.close();
  };
}

export default { render };
