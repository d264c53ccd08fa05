// Messages to the kernel, each answered by an ack carrying its id (picsort.app.upload_widget.acknowledge): shared by
// the upload zone and the camera, which send one message at a time and wait for its answer. anywidget loads each
// widget's code alone from a blob URL, where one file cannot import another, so Python puts this text before
// each widget's own (picsort.app.widget_scripts).

// `send(message, buffers)` sends `message` with a fresh id and resolves on its ack; `close()` stops listening.
function acknowledgedMessages(model) {
  let nextId = 0;
  const waiting = new Map();

  const onAck = (message) => {
    if (message && message.type === "ack" && waiting.has(message.id)) {
      waiting.get(message.id)();
      waiting.delete(message.id);
    }
  };
  model.on("msg:custom", onAck);

  function send(message, buffers) {
    return new Promise((resolve) => {
      const id = ++nextId;
      waiting.set(id, resolve);
      model.send({ ...message, id }, undefined, buffers);
    });
  }

  return { send, close: () => model.off("msg:custom", onAck) };
}
