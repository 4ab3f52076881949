// Removes the "name" custom section from a wasm module, in place. It only maps function
// indexes to names for stack traces, yet makes up about a third of the module; everything
// else (code, data, the sections wasm-bindgen and workerd read) is copied byte for byte.
import { readFileSync, writeFileSync } from "node:fs";

function leb128(bytes, pos) {
  let value = 0;
  let shift = 0;
  for (;;) {
    const byte = bytes[pos++];
    value += (byte & 0x7f) * 2 ** shift;
    shift += 7;
    if (byte < 0x80) return [value, pos];
  }
}

const file = process.argv[2];
const wasm = readFileSync(file);
if (wasm.readUInt32LE(0) !== 0x6d736100) throw new Error(`${file} is not a wasm module`);
const kept = [wasm.subarray(0, 8)];
let pos = 8;
let removed = 0;
while (pos < wasm.length) {
  const start = pos;
  const id = wasm[pos++];
  const [size, body] = leb128(wasm, pos);
  const end = body + size;
  let keep = true;
  if (id === 0) {
    const [nameLength, nameStart] = leb128(wasm, body);
    keep = wasm.subarray(nameStart, nameStart + nameLength).toString() !== "name";
  }
  if (keep) kept.push(wasm.subarray(start, end));
  else removed += end - start;
  pos = end;
}
writeFileSync(file, Buffer.concat(kept));
console.error(`[build] removed ${removed} bytes of wasm names from ${file}`);
