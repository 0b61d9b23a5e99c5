// Reference outputs of a TF.js graph model from the pure-JavaScript @tensorflow/tfjs (cpu backend).
//
// Used once by tools/make_movenet_golden.py to write tests/golden/*.npz; not needed by the tests.
// Usage: node tools/tfjs_reference.mjs MODEL_JSON INPUT_BIN DTYPE SHAPE OUTPUT_JSON
//   INPUT_BIN: little-endian int32 or float32 (DTYPE) values of N inputs of SHAPE (comma-separated,
//   batch 1 included, e.g. 1,256,256,3), concatenated.
//   Writes {"outputs": {name: [[...flattened output for input i...], ...]}, "shapes": {name: [...]},
//   "version": "...", "backend": "cpu"}.
// Needs @tensorflow/tfjs resolvable from the working directory (e.g. `npm install @tensorflow/tfjs@4`
// in a scratch folder and run node from there with this script's path).
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(path.join(process.cwd(), 'noop.js'));
const tf = require('@tensorflow/tfjs');

const [modelJson, inputBin, dtype, shapeArg, outputJson] = process.argv.slice(2);
const shape = shapeArg.split(',').map(Number);
const size = shape.reduce((a, b) => a * b, 1);

// IO handler from local files: the manifest's .bin shards are concatenated in order.
const handler = {
  async load() {
    const doc = JSON.parse(fs.readFileSync(modelJson, 'utf8'));
    const dir = path.dirname(modelJson);
    const specs = [], buffers = [];
    for (const group of doc.weightsManifest) {
      specs.push(...group.weights);
      for (const p of group.paths) buffers.push(fs.readFileSync(path.join(dir, p)));
    }
    const all = Buffer.concat(buffers);
    return {
      modelTopology: doc.modelTopology, format: doc.format, generatedBy: doc.generatedBy,
      convertedBy: doc.convertedBy, signature: doc.signature, weightSpecs: specs,
      weightData: all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength),
    };
  },
};

await tf.setBackend('cpu');
const model = await tf.loadGraphModel(handler);
const raw = fs.readFileSync(inputBin);
const values = dtype === 'int32'
  ? new Int32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4)
  : new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
const names = model.outputs.map((o) => o.name);
const outputs = {}, shapes = {};
for (const name of names) outputs[name] = [];
for (let i = 0; i * size < values.length; i++) {
  const x = tf.tensor(values.slice(i * size, (i + 1) * size), shape, dtype);
  let ys = model.execute(x, names);
  if (!Array.isArray(ys)) ys = [ys];
  for (let k = 0; k < names.length; k++) {
    shapes[names[k]] = ys[k].shape;
    outputs[names[k]].push(Array.from(await ys[k].data()));
  }
  tf.dispose([x, ...ys]);
}
fs.writeFileSync(outputJson, JSON.stringify({ outputs, shapes, version: tf.version.tfjs, backend: tf.getBackend() }));
