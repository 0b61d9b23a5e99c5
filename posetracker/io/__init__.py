"""Reading and writing: dataset formats, frame sources, result sinks, rendering."""
