// h(tag, attrs, ...children): an element, for every widget's front-end code (put before it by
// picsort.app.widget_scripts). An attribute that is false, null or undefined is left out and true gives an empty
// value; children are nodes or text (never markup), arrays are flattened and null, undefined and false skipped.

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (key === "class") el.className = value;
    else if (key === "style") el.style.cssText = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}
