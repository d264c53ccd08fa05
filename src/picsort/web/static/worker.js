// One ONNX Runtime Web session on one thread, in a worker of its own: the page runs one per core (two at most),
// so photos are answered side by side and the page stays responsive while the network runs. Threads inside one
// session would need cross-origin isolation headers, which a plain static server does not send.
importScripts("vendor/ort.wasm.min.js");

let session = null;
let size = 0;

self.onmessage = async ({ data }) => {
  if (data.type === "load") {
    try {
      ort.env.wasm.wasmPaths = data.wasmPaths;
      ort.env.wasm.numThreads = 1;
      size = data.size;
      session = await ort.InferenceSession.create(new Uint8Array(data.model), { executionProviders: ["wasm"],
                                                                                graphOptimizationLevel: "all" });
      self.postMessage({ type: "loaded" });
    } catch (error) {
      self.postMessage({ type: "failed", message: String(error && error.message ? error.message : error) });
    }
    return;
  }
  if (data.type === "run") {
    try {
      const output = await session.run({ pixels: new ort.Tensor("uint8", data.view, [1, size, size, 3]) });
      self.postMessage({ type: "result", id: data.id, probabilities: Array.from(output.probabilities.data),
                         similarity: output.similarity.data[0], resemblance: output.resemblance.data[0] });
    } catch (error) {
      self.postMessage({ type: "error", id: data.id, message: String(error && error.message ? error.message : error) });
    }
  }
};
