// The parts of CodeMirror 6 the console's JSON editor uses, bundled into one ES module
// (assets/codemirror.js) by build.sh.
export { EditorState, Compartment } from '@codemirror/state';
export { EditorView, keymap, lineNumbers, highlightActiveLine, highlightActiveLineGutter, drawSelection } from '@codemirror/view';
export { defaultKeymap, history, historyKeymap } from '@codemirror/commands';
export { syntaxHighlighting, bracketMatching, indentOnInput, indentUnit } from '@codemirror/language';
export { json } from '@codemirror/lang-json';
export { classHighlighter } from '@lezer/highlight';
