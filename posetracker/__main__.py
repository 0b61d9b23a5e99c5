from posetracker.cli import main_entry

main_entry()
