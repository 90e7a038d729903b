/** Where each frame of a segment image starts and ends (images the tests build, every frame intact). */
import { checkFrame, segmentHeaderBytes } from "../../src/wal/index.js";

export function frameBounds(image: Buffer): { starts: number[]; ends: number[] } {
  const starts: number[] = [];
  const ends: number[] = [];
  for (let p = segmentHeaderBytes; p < image.length;) {
    starts.push(p);
    p = (checkFrame(image, p) as { end: number }).end;
    ends.push(p);
  }
  return { starts, ends };
}
